// Small helpers for talking to an MCP endpoint with raw fetch and for
// inspecting what the recording proxy saw.
import assert from 'node:assert/strict';

export const INITIALIZE_BODY = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'mcpgate-e2e', version: '0.0.0' },
  },
};

/** POST one JSON-RPC message the way a Streamable HTTP client would. */
export function postMcp(url, body, { token, headers = {} } = {}) {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

/** The exact challenge mcpgate must send when no credentials were presented. */
export function expectedNoTokenChallenge(gateway) {
  return `Bearer realm="mcp", scope="mcp:connect", resource_metadata="${gateway.metadataUrl}"`;
}

/**
 * Assert the upstream side of the recorder: at least one request got there,
 * none carried any Authorization header (so in particular not the client's
 * token), none contained `token` anywhere in its headers, and each carried
 * the gateway's configured credential.
 */
export function assertUpstreamClean(recorder, { token, credential }) {
  const reqs = recorder.requests;
  assert.ok(reqs.length > 0, 'no request reached the upstream at all');
  for (const r of reqs) {
    const where = `${r.method} ${r.url}`;
    assert.equal(r.headers.authorization, undefined, `upstream saw an Authorization header on ${where}`);
    if (token) {
      for (const [name, value] of Object.entries(r.headers)) {
        assert.ok(!String(value).includes(token), `upstream saw the client's token in header ${name} on ${where}`);
      }
    }
    assert.equal(
      r.headers[credential.name.toLowerCase()],
      credential.value,
      `upstream request ${where} lacked ${credential.name}`,
    );
  }
}
