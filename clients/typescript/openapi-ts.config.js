// @hey-api/openapi-ts: a fetch client, its types, Zod schemas, and an SDK that validates every
// response against them at run time (so a response the document does not describe fails loudly).
export default {
  input: '../openapi.json',
  output: 'generated/hey-api',
  plugins: [
    '@hey-api/client-fetch',
    '@hey-api/typescript',
    'zod',
    { name: '@hey-api/sdk', validator: true },
  ],
};
