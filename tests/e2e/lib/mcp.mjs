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

/**
 * The JSON-RPC messages in a Streamable HTTP answer body: one JSON value for
 * application/json, or the `data:` of every SSE event for text/event-stream
 * (events without data, e.g. priming events, are skipped).
 */
export function parseMcpBody(contentType, text) {
  if (/^application\/json\b/i.test(contentType ?? '')) {
    const value = JSON.parse(text);
    return Array.isArray(value) ? value : [value];
  }
  if (/^text\/event-stream\b/i.test(contentType ?? '')) {
    const messages = [];
    for (const event of text.split(/\r?\n\r?\n/)) {
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data.trim()) messages.push(JSON.parse(data));
    }
    return messages;
  }
  throw new Error(`not an MCP answer: Content-Type ${contentType}\n${text.slice(0, 300)}`);
}

/**
 * A Streamable HTTP session driven with raw fetch: initialize, then
 * notifications/initialized, then `request(method, params)` as often as
 * needed. Each request returns { status, contentType, challenge, text,
 * message } where `message` is the JSON-RPC response with the request's id
 * (undefined for a non-2xx answer).
 */
export async function openSession(url, { token, protocolVersion = '2025-06-18' } = {}) {
  const init = await postMcp(url, { ...INITIALIZE_BODY, params: { ...INITIALIZE_BODY.params, protocolVersion } }, { token });
  const initText = await init.text();
  assert.equal(init.status, 200, `initialize: ${init.status} ${init.headers.get('www-authenticate') ?? ''} ${initText.slice(0, 300)}`);
  const sessionId = init.headers.get('mcp-session-id');
  assert.ok(sessionId, 'initialize answer carried no Mcp-Session-Id');
  const negotiated = parseMcpBody(init.headers.get('content-type'), initText).find((m) => m.id === INITIALIZE_BODY.id)
    ?.result?.protocolVersion;
  assert.ok(negotiated, `initialize answer had no result: ${initText.slice(0, 300)}`);
  const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': negotiated };
  const initialized = await postMcp(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { token, headers });
  await initialized.arrayBuffer();
  assert.equal(initialized.status, 202, 'notifications/initialized');
  let nextId = 100;
  return {
    sessionId,
    protocolVersion: negotiated,
    headers,
    async request(method, params = {}, { token: otherToken, headers: extra = {} } = {}) {
      const id = nextId++;
      const res = await postMcp(url, { jsonrpc: '2.0', id, method, params }, { token: otherToken ?? token, headers: { ...headers, ...extra } });
      const text = await res.text();
      const contentType = res.headers.get('content-type');
      const out = { id, status: res.status, contentType, challenge: res.headers.get('www-authenticate'), text };
      if (res.ok) out.message = parseMcpBody(contentType, text).find((m) => m.id === id);
      return out;
    },
    async close() {
      await fetch(url, {
        method: 'DELETE',
        headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      })
        .then((r) => r.arrayBuffer())
        .catch(() => {});
    },
  };
}
