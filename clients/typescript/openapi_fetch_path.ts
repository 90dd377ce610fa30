// The same API through openapi-typescript's types and openapi-fetch: the paths, parameters and
// bodies are checked by the compiler against the generated `paths`, and a list, a write and a
// typed error run for real.

import createClient from 'openapi-fetch';

import type { paths } from './generated/openapi-typescript/schema.js';

export async function openapiFetchPath(baseUrl: string, token: string): Promise<void> {
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  const page = await api.GET('/v1/agents', { params: { query: { limit: 1 } } });
  if (!page.data || page.data.items.length !== 1 || !page.data.next_cursor) {
    throw new Error(`openapi-fetch: list ${page.response.status}`);
  }
  const agent = page.data.items[0]!;
  const updated = await api.PATCH('/v1/agents/{agent_id}', {
    params: { path: { agent_id: agent.id } },
    body: { config: { ...agent.config, touched_by: 'openapi-fetch' } },
  });
  if (updated.data?.config['touched_by'] !== 'openapi-fetch') {
    throw new Error(`openapi-fetch: update ${updated.response.status}`);
  }
  const missing = await api.GET('/v1/agents/{agent_id}', {
    params: { path: { agent_id: crypto.randomUUID() } },
  });
  if (missing.response.status !== 404 || missing.error?.error.code !== 'NOT_FOUND') {
    throw new Error(`openapi-fetch: 404 ${missing.response.status}`);
  }
}
