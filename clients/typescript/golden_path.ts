// The golden path over all eight domains, driven through the SDK @hey-api/openapi-ts generated
// from the service's own OpenAPI document (clients/generate), with its Zod schemas validating
// every response at run time (`validator: true`), plus a check that the validated value equals
// the JSON the server sent, so a property the document does not declare (which Zod would strip)
// fails too. Errors parse into the generated `zErrorResponse`.
//
// Usage: IBEX_BASE_URL=http://127.0.0.1:8010 IBEX_TOKEN=ibex_pat_... node dist/golden_path.js

import { createHash, createPublicKey, verify } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { inflateRawSync } from 'node:zlib';

import { client } from './generated/hey-api/client.gen.js';
import * as ibex from './generated/hey-api/sdk.gen.js';
import type { ErrorResponse } from './generated/hey-api/types.gen.js';
import { zErrorResponse } from './generated/hey-api/zod.gen.js';
import { openapiFetchPath } from './openapi_fetch_path.js';

const BASE = process.env.IBEX_BASE_URL!;
const TOKEN = process.env.IBEX_TOKEN!;
// The agent `--dev` seeds with memories and sessions.
const SEEDED_AGENT = '0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7001';

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`golden path: ${what}`);
}

// The raw body of the last response, read beside the SDK's own parsing.
let lastRaw: unknown;
client.setConfig({ baseUrl: BASE, headers: { Authorization: `Bearer ${TOKEN}` } });
client.interceptors.response.use(async (response) => {
  const text = await response.clone().text();
  lastRaw = text ? JSON.parse(text) : undefined;
  return response;
});

type Answer<T> = { data?: T; error?: unknown; response: Response };

/** A success with this status, validated by the generated schema, nothing undeclared. */
function ok<T>(answer: Answer<T>, status: number): T {
  check(answer.response.status === status, `status ${answer.response.status}, wanted ${status}: ${JSON.stringify(answer.error)}`);
  check(answer.data !== undefined, 'a body');
  check(isDeepStrictEqual(answer.data, lastRaw), `undeclared properties in ${JSON.stringify(lastRaw)}`);
  return answer.data;
}

/** A failure with this status and code, parsed by the generated error schema. */
function typedError<T>(answer: Answer<T>, status: number, code: string): ErrorResponse {
  check(answer.response.status === status, `status ${answer.response.status}, wanted ${status}`);
  const error = zErrorResponse.parse(answer.error);
  check(error.error.code === code, `code ${error.error.code}, wanted ${code}`);
  check(error.error.request_id === answer.response.headers.get('x-request-id'), 'the request id');
  return error;
}

async function main() {
  const suffix = Math.random().toString(16).slice(2, 10);

  // Agents: create, update, page through the list with next_cursor.
  let agent = ok(await ibex.createAgent({ body: { name: 'SDK agent', slug: `sdk-ts-${suffix}`, config: { model: 'gpt-4o-mini' } } }), 201);
  agent = ok(await ibex.updateAgent({ path: { agent_id: agent.id }, body: { name: 'SDK agent v2' } }), 200);
  check(agent.name === 'SDK agent v2', 'the update');
  check(ok(await ibex.getAgent({ path: { agent_id: agent.id } }), 200).config['model'] === 'gpt-4o-mini', 'the config');
  const seen: string[] = [];
  let cursor: string | null | undefined;
  do {
    const page = ok(await ibex.listAgents({ query: { limit: 2, ...(cursor ? { cursor } : {}) } }), 200);
    seen.push(...page.items.map((a) => a.id));
    cursor = page.next_cursor;
  } while (cursor);
  check(seen.length >= 4 && new Set(seen).size === seen.length && seen.includes(agent.id), 'paging');

  // Directives: set twice, roll back to the first.
  ok(await ibex.setDirective({ path: { agent_id: agent.id }, body: { content: 'Be brief.' } }), 201);
  ok(await ibex.setDirective({ path: { agent_id: agent.id }, body: { content: 'Be thorough.' } }), 200);
  const rolled = ok(await ibex.rollbackDirective({ path: { agent_id: agent.id }, body: { version_num: 1 } }), 200);
  check(rolled.content === 'Be brief.' && rolled.version_num === 1, 'the rollback');

  // Memories: list, search, export and download the file from its URL.
  const memories = ok(await ibex.listMemories({ path: { agent_id: SEEDED_AGENT }, query: { limit: 5 } }), 200);
  check(memories.items.length > 0, 'seeded memories');
  ok(await ibex.searchMemories({ path: { agent_id: SEEDED_AGENT }, body: { query: 'refund' } }), 200);
  let job = ok(await ibex.exportMemories({ path: { agent_id: SEEDED_AGENT }, body: { format: 'csv' } }), 202);
  const deadline = Date.now() + 60_000;
  while (job.status !== 'succeeded' && job.status !== 'failed') {
    check(Date.now() < deadline, 'the export finishes within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 300));
    job = ok(await ibex.getMemoryExport({ path: { agent_id: SEEDED_AGENT, job_id: job.job_id } }), 200);
  }
  check(job.status === 'succeeded' && job.download_url, `the export: ${job.error}`);
  const file = await fetch(job.download_url);
  check(file.ok && (await file.arrayBuffer()).byteLength === job.size_bytes, 'the download');

  // Sessions: list and fetch a replay.
  const sessions = ok(await ibex.listSessions({ query: { agent_id: SEEDED_AGENT, status: 'completed', limit: 5 } }), 200);
  let replayed = false;
  for (const session of sessions.items) {
    const answer = await ibex.replaySession({ path: { session_id: session.id } });
    if (answer.response.status === 409) {
      typedError(answer, 409, 'SESSION_NOT_ARCHIVED');
      continue;
    }
    const replay = ok(answer, 200);
    check((await fetch(replay.url)).ok, 'the archive downloads');
    replayed = true;
    break;
  }
  check(replayed, 'a seeded session has an archive');

  // Analytics: usage over the last 30 days.
  const end = new Date();
  end.setMilliseconds(0);
  const start = new Date(end.getTime() - 30 * 86_400_000);
  const series = ok(await ibex.usage({ query: { start: start.toISOString(), end: end.toISOString(), granularity: 'day' } }), 200);
  check(series.buckets.reduce((n, b) => n + b.requests, 0) > 0, 'seeded traffic');

  // Tokens: create, revoke; the revoked one stays visible as revoked.
  const created = ok(await ibex.createToken({ body: { name: `sdk-ts-${suffix}`, permissions: ['memory:read'] } }), 201);
  check(created.plaintext.startsWith('ibex_pat_'), 'the secret once');
  const revoke = await ibex.deleteToken({ path: { token_id: created.id } });
  check(revoke.response.status === 204, 'the revocation');
  const revoked = ok(await ibex.getToken({ path: { token_id: created.id } }), 200);
  check(revoked.is_revoked && revoked.revoked_at !== null, 'revoked');

  // Typed errors: a 404 and a 400 (an expiry in the past: no schema can say "in the future").
  typedError(await ibex.getAgent({ path: { agent_id: crypto.randomUUID() } }), 404, 'NOT_FOUND');
  const error = typedError(
    await ibex.createToken({ body: { name: 'late', permissions: ['memory:read'], expires_at: start.toISOString() } }),
    400,
    'VALIDATION_ERROR',
  );
  check(error.error.field_errors?.[0]?.field === 'expires_at', 'the field named');

  // Data requests: one person's access archive, its manifest verified with the public keys.
  const filed = ok(
    await ibex.createDataRequest({
      body: { type: 'access', subject: { kind: 'end_user', external_ids: ['conv-1-2'] }, reference: `sdk-ts-${suffix}` },
    }),
    202,
  );
  let request = filed;
  const requestDeadline = Date.now() + 60_000;
  while (request.status !== 'succeeded') {
    check(request.status !== 'rejected' && request.status !== 'canceled', `the request ${request.status}`);
    check(Date.now() < requestDeadline, 'the access request finished within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 300));
    request = ok(await ibex.getDataRequest({ path: { request_id: filed.id } }), 200);
  }
  const link = ok(await ibex.getArchive({ path: { request_id: filed.id } }), 200);
  const archive = Buffer.from(await (await fetch(link.url)).arrayBuffer());
  check(createHash('sha256').update(archive).digest('hex') === request.archive?.sha256, 'the archive digest');
  const keys = ok(await ibex.jwks(), 200);
  const manifest = JSON.parse(zipEntry(archive, 'manifest.json').toString());
  check(isDeepStrictEqual(verified(zipEntry(archive, 'manifest.jws').toString(), keys.keys), manifest), 'the signed manifest');
  check(manifest.request.id === filed.id, 'the manifest names the request');
  const receipt = ok(await ibex.getReceipt({ path: { request_id: filed.id } }), 200);
  check(verified(receipt.jws, keys.keys).archive_sha256 === request.archive?.sha256, 'the receipt proves the archive');

  await openapiFetchPath(BASE, TOKEN);
  console.log('typescript golden path: ok');
}

/** The claims of a compact EdDSA JWS, checked with the key of its `kid`. */
function verified(jws: string, keys: { kid: string; x: string }[]): Record<string, unknown> {
  const parts = jws.split('.');
  check(parts.length === 3, 'a compact JWS');
  const [header, payload, signature] = parts as [string, string, string];
  const head = JSON.parse(Buffer.from(header, 'base64url').toString());
  check(head.alg === 'EdDSA', 'an EdDSA signature');
  const jwk = keys.find((k) => k.kid === head.kid);
  check(jwk, 'its key is published');
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  check(verify(null, Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, 'base64url')), 'the signature verifies');
  return JSON.parse(Buffer.from(payload, 'base64url').toString());
}

/** One small entry of a ZIP file, found by its local header (the manifest's are neither zip64
 * nor streamed), inflated. */
function zipEntry(zip: Buffer, name: string): Buffer {
  for (let at = zip.indexOf('PK\x03\x04', 0, 'latin1'); at >= 0; at = zip.indexOf('PK\x03\x04', at + 4, 'latin1')) {
    const method = zip.readUInt16LE(at + 8);
    const size = zip.readUInt32LE(at + 18);
    const nameLength = zip.readUInt16LE(at + 26);
    const extraLength = zip.readUInt16LE(at + 28);
    if (zip.toString('utf8', at + 30, at + 30 + nameLength) !== name) continue;
    const start = at + 30 + nameLength + extraLength;
    const data = zip.subarray(start, start + size);
    return method === 8 ? inflateRawSync(data) : data;
  }
  throw new Error(`golden path: no ${name} in the archive`);
}

main().catch((failure) => {
  console.error('typescript golden path FAILED:', failure);
  process.exit(1);
});
