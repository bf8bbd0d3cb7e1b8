// The policy engine (issue #4) against real peers: per-tool / per-prompt /
// per-resource scope rules, list filtering in SSE and JSON answers, the 403
// insufficient_scope step-up challenge and how the two SDK clients react to
// it, RFC 9728 scopes_supported, and strict JSON-RPC on the wire.
//
// Three stacks (AS + upstream + recorder + gateway each; the AS accepts one
// resource, the gateway's public_url, so an SDK client cannot be pointed at a
// second gateway of the same stack):
//   sse   server-everything's own streamableHttp (answers POSTs with SSE);
//         tools: { get-env: [[mcp:admin]] }
//   json  the same server-everything server behind the SDK transport with
//         enableJsonResponse (lib/everything-json-server.mjs); adds tools_list,
//         prompt and resource rules
//   echo  like sse, with auth.oauth.scope_challenge_include_token_scopes: true
//         (the challenge carries the token's scopes, then the missing ones)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as V1Client from '@modelcontextprotocol/sdk/client/index.js';
import * as V1Http from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import * as V1Auth from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import * as V2 from '@modelcontextprotocol/client';
import { M2M, decodeJwt, requestToken } from '../lib/as.mjs';
import { describeLog, loggingFetch } from '../lib/logging-fetch.mjs';
import { UPSTREAM_CREDENTIAL } from '../lib/gateway.mjs';
import { assertUpstreamClean, openSession, parseMcpBody } from '../lib/mcp.mjs';
import { startStack } from '../lib/stack.mjs';

const V1 = {
  Client: V1Client.Client,
  StreamableHTTPClientTransport: V1Http.StreamableHTTPClientTransport,
  ClientCredentialsProvider: V1Auth.ClientCredentialsProvider,
};

const SSE_SCOPES = `scopes:
  initialize: [mcp:connect]
  tools:
    get-env: [[mcp:admin]]
`;

// Prompt and resource names are server-everything 2026.8.31's.
const JSON_SCOPES = `scopes:
  initialize: [mcp:connect]
  tools_list: [mcp:tools]
  tools:
    get-env: [[mcp:admin]]
    "admin_*": mcp:admin
  prompts:
    args-prompt: [prompts:advanced]
  resources:
    "demo://resource/static/document/*": [read:docs]
`;
const JSON_EXTRA_SCOPES = ['prompts:advanced', 'read:docs'];

const GET_ENV = { name: 'get-env', arguments: {} };

const scopeSet = (s) => new Set((s ?? '').split(/\s+/).filter(Boolean));

async function tokenFor(stack, scope) {
  const { access_token: token, scope: granted } = await requestToken(stack.as, { scope, resource: stack.publicUrl });
  assert.deepEqual(scopeSet(granted), scopeSet(scope), 'the AS should grant exactly what was asked');
  return token;
}

function toolChallenge(gateway, scope, tool = 'get-env') {
  return (
    `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${gateway.metadataUrl}", ` +
    `error_description="insufficient scopes for tool ${tool}"`
  );
}

/**
 * The upstream's own id for the session the newest `initialize` opened. mcpgate
 * gives clients an id of its own, so upstream requests are matched by this one.
 */
function newestUpstreamSession(recorder) {
  const init = recorder.requests.findLast((r) => r.method === 'POST' && r.body.includes('"method":"initialize"'));
  const id = init?.responseHeaders?.['mcp-session-id'];
  assert.ok(id, 'the upstream answered initialize without a session id');
  return id;
}

/** The recorder's record of the upstream POST carrying JSON-RPC request `id` in upstream session `sessionId`. */
function upstreamRecord(recorder, sessionId, id) {
  const hits = recorder.requests.filter((r) => {
    if (r.method !== 'POST' || r.headers['mcp-session-id'] !== sessionId) return false;
    try {
      return JSON.parse(r.body).id === id;
    } catch {
      return false;
    }
  });
  assert.equal(hits.length, 1, `expected one upstream POST for id ${id} in session ${sessionId}, got ${hits.length}`);
  return hits[0];
}

/** Upstream POSTs whose body calls tool `name` (tools/call). */
function upstreamCalls(recorder, name) {
  return recorder.requests.filter((r) => {
    try {
      const m = JSON.parse(r.body);
      return (Array.isArray(m) ? m : [m]).some((x) => x.method === 'tools/call' && x.params?.name === name);
    } catch {
      return false;
    }
  });
}

/**
 * `method` in a raw session with `token`: the gateway's answer must be the
 * upstream's answer (same Content-Type family `contentType`) with exactly the
 * entries of result[`key`] named in `hidden` removed, everything else
 * untouched. Returns the names the client saw.
 */
async function assertFilteredList(stack, token, { method, key, field, hidden, contentType }) {
  const session = await openSession(stack.publicUrl, { token });
  const upstreamSession = newestUpstreamSession(stack.recorder);
  assert.notEqual(upstreamSession, session.sessionId, "the upstream's session id reached the client");
  try {
    const r = await session.request(method);
    assert.equal(r.status, 200, `${method}: ${r.status} ${r.challenge ?? ''} ${r.text.slice(0, 300)}`);
    assert.match(r.contentType ?? '', contentType, `${method}: Content-Type at the client`);
    const up = upstreamRecord(stack.recorder, upstreamSession, r.id);
    assert.match(up.responseContentType ?? '', contentType, `${method}: Content-Type the upstream answered with`);
    const upResult = parseMcpBody(up.responseContentType, up.responseBody).find((m) => m.id === r.id)?.result;
    assert.ok(upResult, `the upstream's ${method} answer had no result:\n${up.responseBody.slice(0, 500)}`);
    const upNames = upResult[key].map((item) => item[field]);
    for (const name of hidden) assert.ok(upNames.includes(name), `the upstream did not offer ${name}: ${upNames.join(', ')}`);
    assert.ok(r.message?.result, `no JSON-RPC result for ${method} at the client:\n${r.text.slice(0, 500)}`);
    assert.deepEqual(
      r.message.result,
      { ...upResult, [key]: upResult[key].filter((item) => !hidden.includes(item[field])) },
      `${method}: the client should get the upstream's answer minus ${hidden.join(', ') || 'nothing'}`,
    );
    return r.message.result[key].map((item) => item[field]);
  } finally {
    await session.close();
  }
}

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/** get-env's answer is server-everything's process.env as JSON; its PORT is the upstream's port. */
function assertGetEnvResult(result, stack) {
  assert.notEqual(result.isError, true, JSON.stringify(result).slice(0, 500));
  assert.equal(JSON.parse(textOf(result)).PORT, String(stack.everything.port));
}

function newClient(sdk, stack, { scope = 'mcp:connect', fetch }) {
  const provider = new sdk.ClientCredentialsProvider({
    clientId: M2M.clientId,
    clientSecret: M2M.clientSecret,
    expectedIssuer: stack.as.issuer,
    scope,
  });
  const transport = new sdk.StreamableHTTPClientTransport(new URL(stack.publicUrl), { authProvider: provider, fetch });
  const client = new sdk.Client({ name: 'mcpgate-e2e-policy', version: '0.0.0' });
  return { provider, transport, client };
}

const toolNames = async (client) => (await client.listTools()).tools.map((t) => t.name);

/** Token requests the client made, in order, with the scope each asked for. */
function tokenRequests(log, as) {
  return log
    .filter((e) => e.method === 'POST' && e.url === as.tokenUrl)
    .map((e) => ({ ...e, scope: new URLSearchParams(e.requestBody ?? '').get('scope') }));
}

/**
 * The SDK step-up scenario: connect (401 -> token), list tools (no get-env),
 * call get-env (403 -> new token -> retry -> 200), list again (get-env now
 * there). Returns what the AS issued to the client meanwhile and the log.
 */
async function runStepUp(sdk, stack, { expectedChallenge }) {
  const { fetch, log } = loggingFetch();
  const { provider, transport, client } = newClient(sdk, stack, { fetch });
  const issuedBefore = stack.as.issued.length;
  const callsBefore = upstreamCalls(stack.recorder, 'get-env').length;
  try {
    await client.connect(transport);
    const first = await toolNames(client); // asserted last: that is list filtering, not step-up

    const result = await client.callTool(GET_ENV);
    assertGetEnvResult(result, stack);

    const forbidden = log.filter((e) => e.status === 403);
    assert.equal(forbidden.length, 1, describeLog(log));
    assert.equal(forbidden[0].wwwAuthenticate, expectedChallenge);
    // After the 403: a token request, then the retried call, which succeeded.
    const i403 = log.indexOf(forbidden[0]);
    const iToken = log.findIndex((e, i) => i > i403 && e.url === stack.as.tokenUrl);
    const iRetry = log.findIndex((e, i) => i > iToken && e.url === stack.publicUrl && e.method === 'POST');
    assert.ok(iToken > i403 && iRetry > iToken && log[iRetry].status === 200, describeLog(log));

    const issued = stack.as.issued.slice(issuedBefore).filter((t) => t.clientId === M2M.clientId);
    assert.equal(issued.length, 2, `expected two tokens, got ${JSON.stringify(issued.map((t) => t.scope))}`);
    assert.deepEqual(scopeSet(issued[0].scope), scopeSet('mcp:connect'));
    assert.deepEqual(scopeSet(issued[1].scope), scopeSet('mcp:connect mcp:admin'));
    assert.deepEqual(scopeSet(decodeJwt(issued[1].accessToken).payload.scope), scopeSet('mcp:connect mcp:admin'));
    assert.equal(provider.tokens()?.access_token, issued[1].accessToken, 'the client should now use the second token');

    // The refused call never reached the upstream; the retry did, once. No token did.
    assert.equal(upstreamCalls(stack.recorder, 'get-env').length - callsBefore, 1);
    for (const { accessToken: token } of issued) assertUpstreamClean(stack.recorder, { token, credential: UPSTREAM_CREDENTIAL });

    const after = await toolNames(client);
    assert.ok(first.includes('echo') && !first.includes('get-env'), `tools/list before step-up: ${first.join(', ')}`);
    assert.ok(after.includes('get-env'), `tools/list after step-up: ${after.join(', ')}`);
    return { issued, log };
  } finally {
    await client.close().catch(() => {});
  }
}

/**
 * SDK v1 (1.32.2) with client_credentials cannot step up. On 403
 * insufficient_scope, StreamableHTTPClientTransport.send() stores the
 * challenge's scope in `_scope` (replacing, not merging) and calls auth()
 * with it; but for a non-interactive provider auth() gets the token through
 * fetchToken(), which asks for `provider.clientMetadata.scope` (the scope the
 * ClientCredentialsProvider was built with) and never sees the challenge's.
 * So the client gets another token with its configured scope, retries once,
 * receives the identical challenge and throws. Nothing reaches the upstream.
 */
async function assertV1GivesUp(stack, { challenge, transportScope }) {
  const { fetch, log } = loggingFetch();
  const { client, transport } = newClient(V1, stack, { fetch });
  const callsBefore = upstreamCalls(stack.recorder, 'get-env').length;
  try {
    await client.connect(transport);
    await assert.rejects(client.callTool(GET_ENV), /Server returned 403 after trying upscoping/);
    // What v1 took from the challenge (used only by interactive flows' authorization requests).
    assert.equal(transport._scope, transportScope);
  } finally {
    await client.close().catch(() => {});
  }
  assert.deepEqual(tokenRequests(log, stack.as).map((e) => e.scope), ['mcp:connect', 'mcp:connect'], describeLog(log));
  assert.deepEqual(
    log.filter((e) => e.status === 403).map((e) => e.wwwAuthenticate),
    [challenge, challenge],
    describeLog(log),
  );
  assert.equal(upstreamCalls(stack.recorder, 'get-env').length, callsBefore);
}

describe('policy: SSE upstream (server-everything streamableHttp), tools: { get-env: [[mcp:admin]] }', () => {
  let stack;
  before(async () => {
    stack = await startStack({ gatewayOptions: () => ({ scopesYaml: SSE_SCOPES }) });
  });
  after(async () => {
    await stack?.stop();
  });

  test('tools/list over SSE: get-env hidden without mcp:admin, shown with it; the rest untouched', async (t) => {
    const plain = await tokenFor(stack, 'mcp:connect');
    const admin = await tokenFor(stack, 'mcp:connect mcp:admin');
    const common = { method: 'tools/list', key: 'tools', field: 'name', contentType: /^text\/event-stream/ };
    const withAdmin = await assertFilteredList(stack, admin, { ...common, hidden: [] });
    t.diagnostic(`server-everything tools: ${withAdmin.join(', ')}`);
    assert.ok(withAdmin.includes('get-env'));
    const without = await assertFilteredList(stack, plain, { ...common, hidden: ['get-env'] });
    assert.ok(without.includes('echo'));
  });

  test('tools/call get-env without mcp:admin -> 403 step-up challenge, never reaches the upstream', async () => {
    const plain = await tokenFor(stack, 'mcp:connect');
    const session = await openSession(stack.publicUrl, { token: plain });
    const upstreamSession = newestUpstreamSession(stack.recorder);
    const before = stack.recorder.requests.filter((r) => r.headers['mcp-session-id'] === upstreamSession).length;
    const r = await session.request('tools/call', GET_ENV);
    assert.equal(r.status, 403, r.text.slice(0, 300));
    assert.equal(r.challenge, toolChallenge(stack.gateway, 'mcp:admin'));
    assert.equal(r.text, '');
    const afterCount = stack.recorder.requests.filter((r2) => r2.headers['mcp-session-id'] === upstreamSession).length;
    assert.equal(afterCount, before, 'the refused call reached the upstream');
    assert.equal(upstreamCalls(stack.recorder, 'get-env').length, 0);

    // Same session, other tools still work with the same token.
    const echo = await session.request('tools/call', { name: 'echo', arguments: { message: 'still here' } });
    assert.equal(echo.status, 200, echo.text.slice(0, 300));
    assert.match(textOf(echo.message.result), /still here/);
    await session.close();

    // Positive control: with mcp:admin the call goes through.
    const admin = await tokenFor(stack, 'mcp:connect mcp:admin');
    const adminSession = await openSession(stack.publicUrl, { token: admin });
    const ok = await adminSession.request('tools/call', GET_ENV);
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
    assertGetEnvResult(ok.message.result, stack);
    assert.equal(upstreamCalls(stack.recorder, 'get-env').length, 1);
    await adminSession.close();
  });

  test('SDK v2 client steps up: 403 -> token for the union of scopes -> retry -> 200', async () => {
    const { log } = await runStepUp(V2, stack, { expectedChallenge: toolChallenge(stack.gateway, 'mcp:admin') });
    // SEP-2350: the second request asks for what it had plus what was challenged.
    assert.deepEqual(
      tokenRequests(log, stack.as).map((e) => scopeSet(e.scope)),
      [scopeSet('mcp:connect'), scopeSet('mcp:connect mcp:admin')],
    );
  });

  test('SDK v1 client (client_credentials) does not step up: same scope again, same 403, gives up', async () => {
    await assertV1GivesUp(stack, { challenge: toolChallenge(stack.gateway, 'mcp:admin'), transportScope: 'mcp:admin' });
  });

  test('SDK v1 client configured with mcp:admin up front: sees get-env and calls it, no 403', async () => {
    const { fetch, log } = loggingFetch();
    const { client, transport } = newClient(V1, stack, { fetch, scope: 'mcp:connect mcp:admin' });
    try {
      await client.connect(transport);
      assert.ok((await toolNames(client)).includes('get-env'));
      assertGetEnvResult(await client.callTool(GET_ENV), stack);
    } finally {
      await client.close().catch(() => {});
    }
    assert.deepEqual(tokenRequests(log, stack.as).map((e) => e.scope), ['mcp:connect mcp:admin'], describeLog(log));
    assert.equal(log.filter((e) => e.status === 403).length, 0, describeLog(log));
  });

  test('RFC 9728 metadata: scopes_supported is the sorted union of every rule', async () => {
    for (const suffix of ['/mcp', '']) {
      const res = await fetch(`${stack.gateway.origin}/.well-known/oauth-protected-resource${suffix}`);
      assert.equal(res.status, 200);
      const doc = await res.json();
      assert.deepEqual(doc.scopes_supported, ['mcp:admin', 'mcp:connect']);
    }
  });

  describe('strict JSON-RPC on the wire (token with mcp:admin unless said otherwise, so only the framing is wrong)', () => {
    let admin;
    let plain;
    let session;
    before(async () => {
      admin = await tokenFor(stack, 'mcp:connect mcp:admin');
      plain = await tokenFor(stack, 'mcp:connect');
      session = await openSession(stack.publicUrl, { token: admin });
    });
    after(async () => {
      await session?.close();
    });

    /**
     * POST a raw body in the session (a header given as null is left out);
     * returns { status, contentType, challenge, text, json, upstreamSaw }.
     */
    async function raw(body, headers = {}, { token = admin } = {}) {
      const before = stack.recorder.requests.length;
      const all = {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        ...session.headers,
        ...headers,
      };
      const res = await fetch(stack.publicUrl, {
        method: 'POST',
        headers: Object.fromEntries(Object.entries(all).filter(([, v]) => v !== null)),
        body,
      });
      const text = await res.text();
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        // not JSON
      }
      return {
        status: res.status,
        contentType: res.headers.get('content-type'),
        challenge: res.headers.get('www-authenticate'),
        text,
        json,
        upstreamSaw: stack.recorder.requests.slice(before),
      };
    }
    const callGetEnv = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: GET_ENV });

    test('batch [tools/call get-env] with MCP-Protocol-Version 2025-11-25 -> 400 -32600, upstream sees nothing', async () => {
      const r = await raw(JSON.stringify([callGetEnv(1)]), { 'mcp-protocol-version': '2025-11-25' });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json?.jsonrpc, '2.0', r.text);
      assert.equal(r.json?.error?.code, -32600, r.text);
      assert.equal(r.json?.id, null, r.text);
      assert.deepEqual(r.upstreamSaw, []);
    });

    test('batch under 2025-03-26 is allowed, and authorized message by message: no mcp:admin -> 403, upstream sees nothing', async () => {
      for (const headers of [{ 'mcp-protocol-version': null }, { 'mcp-protocol-version': '2025-03-26' }]) {
        const echo = { jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' } } };
        const r = await raw(JSON.stringify([echo, callGetEnv(11)]), headers, { token: plain });
        assert.equal(r.status, 403, `${JSON.stringify(headers)}: ${r.text}`);
        assert.equal(r.challenge, toolChallenge(stack.gateway, 'mcp:admin'));
        assert.equal(r.text, '');
        assert.deepEqual(r.upstreamSaw, []);
      }
    });

    test('duplicate "method" keys -> 400 JSON-RPC error, upstream sees nothing (either order, either token)', async () => {
      const params = '"params":{"name":"get-env","arguments":{}}';
      for (const [body, token] of [
        [`{"jsonrpc":"2.0","id":2,"method":"tools/list","method":"tools/call",${params}}`, admin],
        // A last-key-wins parser would read tools/list and let it through.
        [`{"jsonrpc":"2.0","id":2,"method":"tools/call",${params},"method":"tools/list"}`, plain],
      ]) {
        const r = await raw(body, {}, { token });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json?.jsonrpc, '2.0', r.text);
        assert.equal(typeof r.json?.error?.code, 'number', r.text);
        assert.deepEqual(r.upstreamSaw, []);
      }
    });

    test('Mcp-Name: echo (or Mcp-Method: tools/list) on a body calling get-env -> 400 JSON-RPC -32020, upstream sees nothing', async () => {
      const r = await raw(JSON.stringify(callGetEnv(3)), { 'mcp-method': 'tools/call', 'mcp-name': 'echo' });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json?.error?.code, -32020, r.text);
      assert.equal(r.json?.id, 3, r.text);
      assert.deepEqual(r.upstreamSaw, []);
      const m = await raw(JSON.stringify(callGetEnv(3)), { 'mcp-method': 'tools/list' });
      assert.equal(m.status, 400, m.text);
      assert.equal(m.json?.error?.code, -32020, m.text);
      assert.deepEqual(m.upstreamSaw, []);
    });

    test('Content-Type text/plain -> 415; Content-Encoding gzip -> 415; upstream sees neither', async () => {
      const plain = await raw(JSON.stringify(callGetEnv(4)), { 'content-type': 'text/plain' });
      assert.equal(plain.status, 415, plain.text);
      assert.deepEqual(plain.upstreamSaw, []);
      const gzip = await raw(JSON.stringify(callGetEnv(5)), { 'content-encoding': 'gzip' });
      assert.equal(gzip.status, 415, gzip.text);
      assert.deepEqual(gzip.upstreamSaw, []);
    });

    test('positive control: the same call, well-formed, is forwarded once', async () => {
      const r = await raw(JSON.stringify(callGetEnv(6)), { 'mcp-method': 'tools/call', 'mcp-name': 'get-env' });
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.equal(r.upstreamSaw.length, 1);
      // The upstream got re-serialised JSON carrying the same message.
      assert.deepEqual(JSON.parse(r.upstreamSaw[0].body), callGetEnv(6));
    });
  });
});

describe('policy: JSON upstream (server-everything with enableJsonResponse), tools_list + prompt/resource rules', () => {
  let stack;
  before(async () => {
    stack = await startStack({
      everything: { jsonResponse: true },
      extraScopes: JSON_EXTRA_SCOPES,
      gatewayOptions: () => ({ scopesYaml: JSON_SCOPES }),
    });
  });
  after(async () => {
    await stack?.stop();
  });

  test('tools/list as JSON: get-env hidden without mcp:admin, shown with it; the rest untouched', async () => {
    const common = { method: 'tools/list', key: 'tools', field: 'name', contentType: /^application\/json/ };
    const plain = await tokenFor(stack, 'mcp:connect mcp:tools');
    const admin = await tokenFor(stack, 'mcp:connect mcp:tools mcp:admin');
    assert.ok((await assertFilteredList(stack, admin, { ...common, hidden: [] })).includes('get-env'));
    assert.ok((await assertFilteredList(stack, plain, { ...common, hidden: ['get-env'] })).includes('echo'));
  });

  test('prompts/list and resources/list are filtered by their own rules', async () => {
    const plain = await tokenFor(stack, 'mcp:connect');
    const all = await tokenFor(stack, 'mcp:connect prompts:advanced read:docs');
    const prompts = { method: 'prompts/list', key: 'prompts', field: 'name', contentType: /^application\/json/ };
    assert.ok((await assertFilteredList(stack, all, { ...prompts, hidden: [] })).includes('args-prompt'));
    assert.ok((await assertFilteredList(stack, plain, { ...prompts, hidden: ['args-prompt'] })).includes('simple-prompt'));

    // Which static documents server-everything lists is its business; all of them are hidden.
    const resources = { method: 'resources/list', key: 'resources', field: 'uri', contentType: /^application\/json/ };
    const listed = await assertFilteredList(stack, all, { ...resources, hidden: [] });
    const docs = listed.filter((uri) => uri.startsWith('demo://resource/static/document/'));
    assert.ok(docs.length > 0, `no static documents listed: ${listed.join(', ')}`);
    await assertFilteredList(stack, plain, { ...resources, hidden: docs });
  });

  test('tools/list without mcp:tools -> 403 missing required scopes', async () => {
    const session = await openSession(stack.publicUrl, { token: await tokenFor(stack, 'mcp:connect') });
    try {
      const r = await session.request('tools/list');
      assert.equal(r.status, 403, r.text.slice(0, 300));
      assert.equal(
        r.challenge,
        `Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="${stack.gateway.metadataUrl}", ` +
          `error_description="missing required scopes: mcp:tools"`,
      );
    } finally {
      await session.close();
    }
  });

  test('SDK v2 accumulates scopes over two step-ups (tools/list needs mcp:tools, get-env mcp:admin)', async () => {
    const { fetch, log } = loggingFetch();
    const { client, transport } = newClient(V2, stack, { fetch });
    try {
      await client.connect(transport);
      const names = await toolNames(client);
      assert.ok(names.includes('echo') && !names.includes('get-env'), names.join(', '));
      assertGetEnvResult(await client.callTool(GET_ENV), stack);
    } finally {
      await client.close().catch(() => {});
    }
    assert.deepEqual(
      tokenRequests(log, stack.as).map((e) => scopeSet(e.scope)),
      [scopeSet('mcp:connect'), scopeSet('mcp:connect mcp:tools'), scopeSet('mcp:connect mcp:tools mcp:admin')],
      describeLog(log),
    );
  });

  test('RFC 9728 metadata: scopes_supported is the sorted union of every rule', async () => {
    const doc = await (await fetch(stack.gateway.metadataUrl)).json();
    assert.deepEqual(doc.scopes_supported, ['mcp:admin', 'mcp:connect', 'mcp:tools', 'prompts:advanced', 'read:docs']);
  });
});

describe('policy: scope_challenge_include_token_scopes: true', () => {
  let stack;
  before(async () => {
    stack = await startStack({
      gatewayOptions: () => ({
        scopesYaml: SSE_SCOPES,
        oauthExtra: '    scope_challenge_include_token_scopes: true\n',
      }),
    });
  });
  after(async () => {
    await stack?.stop();
  });

  test('the challenge names the token scopes, then the missing ones', async () => {
    const session = await openSession(stack.publicUrl, { token: await tokenFor(stack, 'mcp:connect') });
    try {
      const r = await session.request('tools/call', GET_ENV);
      assert.equal(r.status, 403, r.text.slice(0, 300));
      assert.equal(r.challenge, toolChallenge(stack.gateway, 'mcp:connect mcp:admin'));
    } finally {
      await session.close();
    }
  });

  test('SDK v1 client (client_credentials) still does not step up: it never asks for the challenge scope', async () => {
    await assertV1GivesUp(stack, {
      challenge: toolChallenge(stack.gateway, 'mcp:connect mcp:admin'),
      transportScope: 'mcp:connect mcp:admin',
    });
  });

  test('SDK v2 client steps up too (the union changes nothing here)', async () => {
    await runStepUp(V2, stack, { expectedChallenge: toolChallenge(stack.gateway, 'mcp:connect mcp:admin') });
  });
});
