// MCP 2026-07-28 (the stateless revision) through mcpgate, with real peers on both
// sides: the TypeScript v2 client (@modelcontextprotocol/client) and the Python SDK
// 2.x client (python/client.py in python/.venv, see python/setup.sh) against a
// 2026-07-28 server built with the TypeScript v2 server SDK (lib/modern-server.mjs:
// server-everything 2026.8.31 is on SDK 1.x and answers `server/discover` with
// "Server not initialized").
//
// Each scenario runs "directly" against the upstream (through the recorder, no
// gateway, no token) to show what the server itself does, and "through mcpgate"
// with oidc-provider tokens, where the recorder shows what reached the upstream;
// refusals only exist at the gateway. Each test opens its own clients and looks only at the
// upstream requests made after it started, so the tests do not depend on each other.
//
// Gateway policy: every request needs mcp:connect; the tool admin_stats and the
// resources under mem://secret/ need mcp:admin.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as V2 from '@modelcontextprotocol/client';
import * as V1Client from '@modelcontextprotocol/sdk/client/index.js';
import * as V1Http from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import * as V1Auth from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { M2M, requestToken } from '../lib/as.mjs';
import { UPSTREAM_CREDENTIAL } from '../lib/gateway.mjs';
import { describeLog, loggingFetch } from '../lib/logging-fetch.mjs';
import { assertUpstreamClean, parseMcpBody, postMcp } from '../lib/mcp.mjs';
import { MODERN_RESOURCES, MODERN_TTL_MS } from '../lib/modern.mjs';
import { runProcess } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

const MODERN = '2026-07-28';
const PUBLIC = MODERN_RESOURCES.public;
const SECRET = MODERN_RESOURCES.secret;

const SCOPES_YAML = `scopes:
  initialize: [mcp:connect]
  tools:
    admin_stats: [[mcp:admin]]
  resources:
    "mem://secret/*": [[mcp:admin]]
`;

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON_DIR = path.join(here, '..', 'python');
const PYTHON = path.join(PYTHON_DIR, '.venv', 'bin', 'python');

let stack;
before(async () => {
  stack = await startStack({ upstream: 'modern', gatewayOptions: () => ({ scopesYaml: SCOPES_YAML }) });
});
after(async () => {
  await stack?.stop();
});

// ---------------------------------------------------------------------------
// helpers

/** The two ways a scenario reaches the server. */
const VIA = {
  direct: { name: 'directly', url: () => stack.recorder.url, gateway: false },
  gateway: { name: 'through mcpgate', url: () => stack.publicUrl, gateway: true },
};

/**
 * A TypeScript v2 client pinned to 2026-07-28, connected (its connect is a
 * `server/discover` probe). Through mcpgate it authenticates from the 401 with
 * client_credentials (the SDK asks for the challenged scope, mcp:connect), or,
 * with `scope`, sends a token the AS issued for exactly that scope; a 403 is
 * thrown at the caller instead of stepping up. `log` records every exchange with
 * headers and JSON bodies.
 */
async function connectV2(via, { scope, onElicit } = {}) {
  const { fetch, log } = loggingFetch(globalThis.fetch, { details: true });
  let provider;
  let staticToken;
  if (via.gateway && scope) {
    staticToken = (await requestToken(stack.as, { scope, resource: stack.publicUrl })).access_token;
  } else if (via.gateway) {
    provider = new V2.ClientCredentialsProvider({
      clientId: M2M.clientId,
      clientSecret: M2M.clientSecret,
      expectedIssuer: stack.as.issuer,
      scope: 'mcp:connect',
    });
  }
  const transport = new V2.StreamableHTTPClientTransport(new URL(via.url()), {
    authProvider: provider,
    requestInit: staticToken ? { headers: { authorization: `Bearer ${staticToken}` } } : undefined,
    fetch,
    onInsufficientScope: 'throw',
  });
  const client = new V2.Client(
    { name: 'mcpgate-e2e-v2', version: '0.0.0' },
    {
      versionNegotiation: { mode: { pin: MODERN } },
      capabilities: onElicit ? { elicitation: { form: {} } } : {},
    },
  );
  if (onElicit) client.setRequestHandler('elicitation/create', onElicit);
  await client.connect(transport);
  assert.equal(client.getProtocolEra(), 'modern', `the client did not settle on ${MODERN}:\n${describeLog(log)}`);
  return { client, transport, log, token: () => staticToken ?? provider?.tokens()?.access_token };
}

/** Runs python/client.py <url> <scenario> [argument]; through mcpgate with a token for `scope`. */
async function runPython(via, scenario, argument, { scope = 'mcp:connect' } = {}) {
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run tests/e2e/python/setup.sh (the MCP Python SDK client)`);
  const env = {};
  if (via.gateway) {
    env.MCP_TOKEN = (await requestToken(stack.as, { scope, resource: stack.publicUrl })).access_token;
  }
  const args = [path.join(PYTHON_DIR, 'client.py'), via.url(), scenario, ...(argument === undefined ? [] : [argument])];
  const r = await runProcess(PYTHON, args, { env, timeoutMs: 90_000 });
  assert.equal(r.code, 0, `python client exited ${r.code} (${r.signal ?? ''}):\n${r.stdout}\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return { ...JSON.parse(lines[lines.length - 1]), stderr: r.stderr, token: env.MCP_TOKEN };
}

/** Upstream requests recorded from now on: call, then read `.requests`. */
function upstreamMark() {
  const from = stack.recorder.requests.length;
  return {
    get requests() {
      return stack.recorder.requests.slice(from);
    },
  };
}

const bodyOf = (record) => {
  try {
    return JSON.parse(record.body);
  } catch {
    return undefined;
  }
};

/** Upstream POSTs of JSON-RPC requests with `method` (and tools/call `name`). */
function upstreamCalls(mark, method, name) {
  return mark.requests.filter((r) => {
    const m = bodyOf(r);
    return r.method === 'POST' && m?.method === method && (name === undefined || m.params?.name === name);
  });
}

/** The JSON-RPC response to `record`'s request in what the upstream answered. */
function upstreamAnswer(record) {
  const id = bodyOf(record)?.id;
  const answer = parseMcpBody(record.responseContentType, record.responseBody).find((m) => m.id === id && !m.method);
  assert.ok(answer, `no answer to id ${id} in the upstream's body:\n${record.responseBody.slice(0, 500)}`);
  return answer;
}

/** The client's log entry whose POST carried a JSON-RPC request with `method`. */
function clientPosts(log, method) {
  return log.filter((e) => {
    if (e.method !== 'POST' || !e.requestBody) return false;
    try {
      return JSON.parse(e.requestBody).method === method;
    } catch {
      return false;
    }
  });
}

function assertNoSessionAnywhere(log, mark) {
  for (const e of log) {
    assert.equal(e.requestHeaders?.['mcp-session-id'], undefined, `the client sent Mcp-Session-Id on ${e.method} ${e.url}`);
    assert.equal(e.responseHeaders?.['mcp-session-id'], undefined, `the client got Mcp-Session-Id from ${e.method} ${e.url}`);
  }
  for (const r of mark.requests) {
    assert.equal(r.headers['mcp-session-id'], undefined, `the upstream saw Mcp-Session-Id on ${r.method}: ${r.body.slice(0, 200)}`);
    assert.equal(r.responseHeaders?.['mcp-session-id'], undefined, 'the upstream minted a session id');
  }
}

/** The Python client's HTTP answers (python/client.py `exchanges`): none set or needed a session. */
function assertPythonSessionless(out) {
  assert.ok(out.exchanges.length > 0, 'the Python client recorded no exchange');
  for (const e of out.exchanges) {
    assert.equal(e.sessionId, null, `the Python client got Mcp-Session-Id on ${e.mcpMethod}`);
    assert.equal(e.requestSessionId, null, `the Python client sent Mcp-Session-Id on ${e.mcpMethod}`);
  }
}

function assertGatewayHop(mark, token) {
  assertUpstreamClean({ requests: mark.requests }, { token, credential: UPSTREAM_CREDENTIAL });
}

function resourceChallenge(uri) {
  return (
    `Bearer error="insufficient_scope", scope="mcp:admin", resource_metadata="${stack.gateway.metadataUrl}", ` +
    `error_description="insufficient scopes for resource ${uri}"`
  );
}

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/** `done` resolves once the client has had `count` notifications/resources/updated (their params in `got`); rejects after `ms`. */
function nextUpdates(client, count, ms = 10_000) {
  const got = [];
  return {
    got,
    done: new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} resource updates in ${ms} ms: ${JSON.stringify(got)}`)), ms);
      client.setNotificationHandler('notifications/resources/updated', (n) => {
        got.push(n.params);
        if (got.length >= count) {
          clearTimeout(timer);
          resolve(got);
        }
      });
    }),
  };
}

// ---------------------------------------------------------------------------
// server/discover

for (const via of [VIA.direct, VIA.gateway]) {
  test(`server/discover ${via.name} (TS v2 client): the server's versions and identity${via.gateway ? ', with only mcp:connect' : ''}`, async () => {
    const mark = upstreamMark();
    const { client, log, token } = await connectV2(via);
    try {
      const discovered = await client.discover();
      assert.deepEqual(discovered.supportedVersions, [MODERN]);
      assert.equal(discovered._meta?.['io.modelcontextprotocol/serverInfo']?.name, 'mcpgate-e2e-modern');
      assert.ok(discovered.capabilities?.tools, JSON.stringify(discovered));

      let posts = clientPosts(log, 'server/discover');
      if (via.gateway) {
        // The connect probe went out without a token first: 401, token, the same probe again.
        assert.equal(posts[0].status, 401, describeLog(log));
        posts = posts.slice(1);
      }
      assert.equal(posts.length, 2, `the connect probe and discover() should both be POSTs:\n${describeLog(log)}`);
      for (const e of posts) {
        assert.equal(e.status, 200, describeLog(log));
        assert.equal(e.requestHeaders['mcp-protocol-version'], MODERN);
        assert.equal(e.requestHeaders['mcp-method'], 'server/discover');
      }
      const upstream = upstreamCalls(mark, 'server/discover');
      assert.equal(upstream.length, posts.length, 'every discover the client sent reached the upstream once');
      for (const r of upstream) {
        assert.equal(bodyOf(r).params._meta['io.modelcontextprotocol/protocolVersion'], MODERN);
        assert.equal(upstreamAnswer(r).result.resultType, 'complete');
      }
      if (via.gateway) {
        const tokenRequest = log.find((e) => e.url === `${stack.as.issuer}/token`);
        assert.equal(new URLSearchParams(tokenRequest.requestBody).get('scope'), 'mcp:connect');
        assertGatewayHop(mark, token());
      }
      assertNoSessionAnywhere(log, mark);
    } finally {
      await client.close().catch(() => {});
    }
  });

  test(`server/discover ${via.name} (Python SDK 2.x client)`, async () => {
    const mark = upstreamMark();
    const out = await runPython(via, 'discover');
    assert.equal(out.ok, true, `${JSON.stringify(out)}\n${out.stderr}`);
    assert.equal(out.protocolVersion, MODERN);
    assert.deepEqual(out.result.supportedVersions, [MODERN]);
    assert.equal(out.result._meta['io.modelcontextprotocol/serverInfo'].name, 'mcpgate-e2e-modern');
    const discovers = out.exchanges.filter((e) => e.mcpMethod === 'server/discover');
    assert.ok(discovers.length >= 1, JSON.stringify(out.exchanges));
    for (const e of discovers) assert.equal(e.status, 200, JSON.stringify(e));
    assert.equal(upstreamCalls(mark, 'server/discover').length, discovers.length, 'every discover reached the upstream once');
    if (via.gateway) assertGatewayHop(mark, out.token);
    assertNoSessionAnywhere([], mark);
    assertPythonSessionless(out);
  });
}

test('server/discover through mcpgate without mcp:connect: 403 naming mcp:connect, nothing upstream', async () => {
  const mark = upstreamMark();
  const { access_token: token } = await requestToken(stack.as, { scope: 'mcp:admin', resource: stack.publicUrl });
  const res = await postMcp(stack.publicUrl, envelope('server/discover'), {
    token,
    headers: { 'mcp-protocol-version': MODERN, 'mcp-method': 'server/discover' },
  });
  await res.arrayBuffer();
  assert.equal(res.status, 403);
  const challenge = res.headers.get('www-authenticate') ?? '';
  assert.match(challenge, /^Bearer error="insufficient_scope", scope="mcp:connect"/);
  assert.deepEqual(mark.requests, [], 'a refused request reached the upstream');
});

describe('server/discover is not an "other" method', () => {
  // A gateway of its own whose `default` level (methods mcpgate does not know)
  // needs mcp:other: server/discover must still need only mcp:connect.
  let strict;
  before(async () => {
    strict = await startStack({
      upstream: 'modern',
      extraScopes: ['mcp:other'],
      gatewayOptions: () => ({ scopesYaml: `${SCOPES_YAML}  default: [mcp:other]\n` }),
    });
  });
  after(async () => {
    await strict?.stop();
  });

  test('with default: [mcp:other], a token with only mcp:connect gets server/discover; an unknown method is 403', async () => {
    const from = strict.recorder.requests.length;
    const { access_token: token } = await requestToken(strict.as, { scope: 'mcp:connect', resource: strict.publicUrl });
    const send = (method) =>
      postMcp(strict.publicUrl, envelope(method), { token, headers: { 'mcp-protocol-version': MODERN, 'mcp-method': method } });

    const discover = await send('server/discover');
    const text = await discover.text();
    assert.equal(discover.status, 200, `${discover.status} ${discover.headers.get('www-authenticate') ?? ''} ${text.slice(0, 300)}`);
    const answer = parseMcpBody(discover.headers.get('content-type'), text).find((m) => m.id === 1);
    assert.deepEqual(answer?.result?.supportedVersions, [MODERN], text.slice(0, 300));

    // The control: the level really is in force for methods mcpgate does not know.
    const other = await send('vendor/unknown');
    await other.arrayBuffer();
    assert.equal(other.status, 403);
    assert.match(other.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="mcp:other"/);
    const reached = strict.recorder.requests.slice(from).map((r) => bodyOf(r)?.method);
    assert.deepEqual(reached, ['server/discover']);
  });
});

/** A JSON-RPC request with the 2026-07-28 `_meta` envelope naming protocol version `version`. */
function envelope(method, params = {}, version = MODERN) {
  return {
    jsonrpc: '2.0',
    id: 1,
    method,
    params: {
      ...params,
      _meta: {
        'io.modelcontextprotocol/protocolVersion': version,
        'io.modelcontextprotocol/clientInfo': { name: 'mcpgate-e2e-raw', version: '0.0.0' },
        'io.modelcontextprotocol/clientCapabilities': {},
      },
    },
  };
}

// ---------------------------------------------------------------------------
// MCP-Protocol-Version header and _meta protocol version must agree

for (const [header, meta] of [
  [MODERN, '2025-11-25'],
  ['2025-11-25', MODERN],
]) {
  for (const via of [VIA.direct, VIA.gateway]) {
    test(`MCP-Protocol-Version ${header} with _meta version ${meta} ${via.name}: 400 HeaderMismatch (-32020)${via.gateway ? ', nothing upstream' : ''}`, async () => {
      const mark = upstreamMark();
      const token = via.gateway ? (await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl })).access_token : undefined;
      const res = await postMcp(via.url(), envelope('tools/call', { name: 'echo', arguments: { message: 'x' } }, meta), {
        token,
        headers: { 'mcp-protocol-version': header, 'mcp-method': 'tools/call', 'mcp-name': 'echo' },
      });
      const text = await res.text();
      assert.equal(res.status, 400, text.slice(0, 300));
      // Intermediaries need not answer with JSON-RPC; when they do, it is HeaderMismatch.
      if (/^application\/json/.test(res.headers.get('content-type') ?? '')) {
        assert.equal(JSON.parse(text).error?.code, -32020, text.slice(0, 300));
      }
      if (via.gateway) {
        assert.deepEqual(mark.requests.map((r) => `${r.method} ${r.body.slice(0, 120)}`), [], 'the mismatched request reached the upstream');
      } else {
        assert.equal(JSON.parse(text).error.code, -32020, text.slice(0, 300));
      }
    });
  }
}

// ---------------------------------------------------------------------------
// tools/list: filtered, cacheScope private

for (const via of [VIA.direct, VIA.gateway]) {
  const expectation = via.gateway
    ? 'admin_stats hidden without mcp:admin, cacheScope "private", ttlMs unchanged'
    : 'all four tools, ttlMs and cacheScope "public" as the server writes them';
  test(`tools/list ${via.name} (TS v2 client): ${expectation}`, async () => {
    const mark = upstreamMark();
    const { client, log } = await connectV2(via);
    try {
      const listed = await client.listTools(undefined, { cacheMode: 'bypass' });
      const names = listed.tools.map((t) => t.name);
      const [up] = upstreamCalls(mark, 'tools/list');
      assert.ok(up, 'tools/list did not reach the upstream');
      const upResult = upstreamAnswer(up).result;
      assert.deepEqual(
        upResult.tools.map((t) => t.name),
        ['echo', 'admin_stats', 'confirm_action', 'touch'],
      );
      assert.equal(upResult.ttlMs, MODERN_TTL_MS);
      assert.equal(upResult.cacheScope, 'public');

      // What reached the client, on the wire (JSON answer) and through the SDK.
      const [post] = clientPosts(log, 'tools/list');
      assert.equal(post.status, 200, describeLog(log));
      const wire = JSON.parse(post.responseText).result;
      if (via.gateway) {
        assert.deepEqual(names, ['echo', 'confirm_action', 'touch']);
        assert.deepEqual(
          wire,
          { ...upResult, tools: upResult.tools.filter((t) => t.name !== 'admin_stats'), cacheScope: 'private' },
          "the client should get the upstream's answer minus admin_stats, marked private",
        );
        assert.equal(listed.cacheScope, 'private');
      } else {
        assert.deepEqual(names, ['echo', 'admin_stats', 'confirm_action', 'touch']);
        assert.deepEqual(wire, upResult);
        assert.equal(listed.cacheScope, 'public');
      }
      assert.equal(listed.ttlMs, MODERN_TTL_MS);
      assertNoSessionAnywhere(log, mark);
    } finally {
      await client.close().catch(() => {});
    }
  });

  test(`tools/list ${via.name} (Python SDK 2.x client): ${expectation}`, async () => {
    const mark = upstreamMark();
    const out = await runPython(via, 'tools');
    assert.equal(out.ok, true, `${JSON.stringify(out)}\n${out.stderr}`);
    const names = out.result.tools.map((t) => t.name);
    assert.equal(out.result.ttlMs, MODERN_TTL_MS);
    if (via.gateway) {
      assert.deepEqual(names, ['echo', 'confirm_action', 'touch']);
      assert.equal(out.result.cacheScope, 'private');
      assertGatewayHop(mark, out.token);
    } else {
      assert.deepEqual(names, ['echo', 'admin_stats', 'confirm_action', 'touch']);
      assert.equal(out.result.cacheScope, 'public');
    }
    const [up] = upstreamCalls(mark, 'tools/list');
    assert.equal(upstreamAnswer(up).result.cacheScope, 'public');
  });
}

test('tools/list through mcpgate with mcp:admin (TS v2 client): admin_stats listed, ttlMs unchanged', async () => {
  const mark = upstreamMark();
  const { client, log } = await connectV2(VIA.gateway, { scope: 'mcp:connect mcp:admin' });
  try {
    const listed = await client.listTools(undefined, { cacheMode: 'bypass' });
    assert.deepEqual(
      listed.tools.map((t) => t.name),
      ['echo', 'admin_stats', 'confirm_action', 'touch'],
    );
    assert.equal(listed.ttlMs, MODERN_TTL_MS);
    assertNoSessionAnywhere(log, mark);
  } finally {
    await client.close().catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// tools/call echo: no session anywhere

for (const via of [VIA.direct, VIA.gateway]) {
  test(`tools/call echo ${via.name} (TS v2 client): works with no Mcp-Session-Id at the client or the upstream`, async () => {
    const mark = upstreamMark();
    const { client, transport, log, token } = await connectV2(via);
    try {
      const result = await client.callTool({ name: 'echo', arguments: { message: 'stateless hi' } });
      assert.notEqual(result.isError, true, JSON.stringify(result));
      assert.equal(textOf(result), 'Echo: stateless hi');
      assert.equal(transport.sessionId, undefined, 'the transport holds a session id');

      const [post] = clientPosts(log, 'tools/call');
      assert.equal(post.requestHeaders['mcp-method'], 'tools/call');
      assert.equal(post.requestHeaders['mcp-name'], 'echo');
      const [up] = upstreamCalls(mark, 'tools/call', 'echo');
      assert.ok(up, 'tools/call echo did not reach the upstream');
      assert.equal(up.headers['mcp-name'], 'echo');
      assert.equal(up.headers['mcp-protocol-version'], MODERN);
      assert.equal(upstreamCalls(mark, 'initialize').length, 0, 'an initialize reached the upstream');
      assertNoSessionAnywhere(log, mark);
      if (via.gateway) assertGatewayHop(mark, token());
    } finally {
      await client.close().catch(() => {});
    }
  });

  test(`tools/call echo ${via.name} (Python SDK 2.x client): no Mcp-Session-Id at the upstream`, async () => {
    const mark = upstreamMark();
    const out = await runPython(via, 'echo', 'py hi');
    assert.equal(out.ok, true, `${JSON.stringify(out)}\n${out.stderr}`);
    assert.equal(textOf(out.result), 'Echo: py hi');
    assert.equal(upstreamCalls(mark, 'tools/call', 'echo').length, 1);
    assert.equal(upstreamCalls(mark, 'initialize').length, 0, 'an initialize reached the upstream');
    assertNoSessionAnywhere([], mark);
    assertPythonSessionless(out);
    if (via.gateway) assertGatewayHop(mark, out.token);
  });
}

// ---------------------------------------------------------------------------
// subscriptions/listen

/** A listen opened by the TS v2 client, then `touch`: the updates it got (waits for `expect` of them). */
async function listenAndTouch(via, uris, { scope, expect = uris.length } = {}) {
  const mark = upstreamMark();
  const { client, log, token } = await connectV2(via, { scope });
  try {
    const updates = nextUpdates(client, expect);
    const sub = await client.listen({ resourceSubscriptions: uris });
    assert.deepEqual(sub.honoredFilter, { resourceSubscriptions: uris });
    const touched = await client.callTool({ name: 'touch', arguments: {} });
    assert.equal(textOf(touched), `touched ${PUBLIC} ${SECRET}`);
    const got = await updates.done;
    // Both updates were published before touch answered; give a stray one a moment.
    await new Promise((r) => setTimeout(r, 300));
    await sub.close();
    // The TS v2 client also POSTs notifications/cancelled for the listen id when it
    // closes (2.4.0 sends it without Mcp-Method): a notification, accepted with 202.
    for (const e of clientPosts(log, 'notifications/cancelled')) assert.equal(e.status, 202, describeLog(log));
    const [listen] = upstreamCalls(mark, 'subscriptions/listen');
    assert.ok(listen, 'subscriptions/listen did not reach the upstream');
    assert.equal(listen.headers['mcp-method'], 'subscriptions/listen');
    assert.deepEqual(bodyOf(listen).params.notifications, { resourceSubscriptions: uris });
    assert.match(listen.responseContentType ?? '', /^text\/event-stream/);
    assertNoSessionAnywhere(log, mark);
    if (via.gateway) assertGatewayHop(mark, token());
    return { got: updates.got, mark };
  } finally {
    await client.close().catch(() => {});
  }
}

for (const via of [VIA.direct, VIA.gateway]) {
  test(`subscriptions/listen ${via.name} on ${PUBLIC} (TS v2 client): acknowledged, gets its update and only that`, async () => {
    const { got } = await listenAndTouch(via, [PUBLIC]);
    assert.deepEqual(
      got.map((p) => p.uri),
      [PUBLIC],
    );
    assert.ok(got[0]._meta?.['io.modelcontextprotocol/subscriptionId'], JSON.stringify(got));
  });

  test(`subscriptions/listen ${via.name} on ${PUBLIC} (Python SDK 2.x client): gets its update`, async () => {
    const mark = upstreamMark();
    const out = await runPython(via, 'listen', PUBLIC);
    assert.equal(out.ok, true, `${JSON.stringify(out)}\n${out.stderr}`);
    assert.deepEqual(out.result, { honored: { resourceSubscriptions: [PUBLIC] }, updated: PUBLIC });
    assert.equal(upstreamCalls(mark, 'subscriptions/listen').length, 1);
    if (via.gateway) assertGatewayHop(mark, out.token);
  });
}

test(`subscriptions/listen directly on ${SECRET} (TS v2 client): the server itself allows it`, async () => {
  const { got } = await listenAndTouch(VIA.direct, [SECRET]);
  assert.deepEqual(
    got.map((p) => p.uri),
    [SECRET],
  );
});

test(`subscriptions/listen through mcpgate with mcp:admin on ${PUBLIC} and ${SECRET} (TS v2 client): both updates`, async () => {
  const { got } = await listenAndTouch(VIA.gateway, [PUBLIC, SECRET], { scope: 'mcp:connect mcp:admin' });
  assert.deepEqual(
    got.map((p) => p.uri),
    [PUBLIC, SECRET],
  );
});

for (const uris of [[SECRET], [PUBLIC, SECRET]]) {
  test(`subscriptions/listen through mcpgate on ${uris.join(' + ')} without mcp:admin (TS v2 client): 403 insufficient_scope naming mcp:admin, nothing upstream`, async () => {
    const mark = upstreamMark();
    const { client, log } = await connectV2(VIA.gateway);
    try {
      await assert.rejects(client.listen({ resourceSubscriptions: uris }), (err) => {
        assert.ok(err instanceof Error, String(err));
        return true;
      });
      const [post] = clientPosts(log, 'subscriptions/listen');
      assert.ok(post, `the client sent no subscriptions/listen:\n${describeLog(log)}`);
      assert.equal(post.status, 403, describeLog(log));
      assert.equal(post.wwwAuthenticate, resourceChallenge(SECRET));
      assert.equal(upstreamCalls(mark, 'subscriptions/listen').length, 0, 'the refused listen reached the upstream');
      assert.equal(log.filter((e) => e.url === `${stack.as.issuer}/token`).length, 1, 'the client stepped up');
    } finally {
      await client.close().catch(() => {});
    }
  });
}

test(`subscriptions/listen through mcpgate on ${SECRET} without mcp:admin (Python SDK 2.x client): refused, nothing upstream`, async () => {
  const mark = upstreamMark();
  const out = await runPython(VIA.gateway, 'listen', SECRET);
  assert.equal(out.ok, false, `the listen was not refused: ${JSON.stringify(out)}`);
  const listens = out.exchanges.filter((e) => e.mcpMethod === 'subscriptions/listen');
  assert.equal(listens.length, 1, JSON.stringify(out.exchanges));
  assert.equal(listens[0].status, 403);
  assert.equal(listens[0].wwwAuthenticate, resourceChallenge(SECRET));
  assert.equal(upstreamCalls(mark, 'subscriptions/listen').length, 0, 'the refused listen reached the upstream');
  assert.equal(upstreamCalls(mark, 'tools/call', 'touch').length, 0);
});

// ---------------------------------------------------------------------------
// multi round-trip requests

/** The two upstream rounds of one confirm_action call, checked; returns them. */
function assertTwoRounds(mark, action) {
  const rounds = upstreamCalls(mark, 'tools/call', 'confirm_action');
  assert.equal(rounds.length, 2, `expected two rounds at the upstream, got ${rounds.length}`);
  const [first, second] = rounds;
  const firstBody = bodyOf(first);
  const secondBody = bodyOf(second);
  assert.deepEqual(firstBody.params.arguments, { action });
  assert.deepEqual(secondBody.params.arguments, { action });
  assert.equal(firstBody.params.requestState, undefined);
  assert.equal(firstBody.params.inputResponses, undefined);
  assert.notEqual(firstBody.id, secondBody.id, 'the retry must use a new JSON-RPC id');

  const interim = upstreamAnswer(first).result;
  assert.equal(interim.resultType, 'input_required');
  assert.equal(interim.inputRequests.confirm.method, 'elicitation/create');
  assert.equal(typeof interim.requestState, 'string');
  // Byte-identical: the retry's body carries the very JSON string the upstream wrote.
  const literal = JSON.stringify(interim.requestState);
  assert.ok(first.responseBody.includes(`"requestState":${literal}`), first.responseBody.slice(0, 500));
  assert.ok(second.body.includes(`"requestState":${literal}`), `retry body lacks ${literal}: ${second.body.slice(0, 500)}`);
  assert.equal(secondBody.params.requestState, interim.requestState);
  assert.equal(secondBody.params.inputResponses.confirm.action, 'accept');
  const final = upstreamAnswer(second).result;
  assert.equal(final.resultType, 'complete');
  return { first, second, interim, final };
}

for (const via of [VIA.direct, VIA.gateway]) {
  test(`multi round-trip elicitation ${via.name} (TS v2 client): input_required, retry with inputResponses and the same requestState, completes`, async () => {
    const mark = upstreamMark();
    const asked = [];
    const { client, log, token } = await connectV2(via, {
      onElicit: async (request) => {
        asked.push(request.params);
        return { action: 'accept', content: { confirmedBy: 'ts-v2' } };
      },
    });
    try {
      const result = await client.callTool({ name: 'confirm_action', arguments: { action: 'deploy' } });
      assert.notEqual(result.isError, true, JSON.stringify(result));
      assert.equal(textOf(result), 'deploy confirmed by ts-v2');
      assert.equal(asked.length, 1, JSON.stringify(asked));
      assert.equal(asked[0].message, 'Really deploy?');

      const { interim } = assertTwoRounds(mark, 'deploy');
      // The client got the interim result as the upstream wrote it.
      const posts = clientPosts(log, 'tools/call');
      assert.equal(posts.length, 2, describeLog(log));
      assert.deepEqual(JSON.parse(posts[0].responseText).result, interim);
      assertNoSessionAnywhere(log, mark);
      if (via.gateway) assertGatewayHop(mark, token());
    } finally {
      await client.close().catch(() => {});
    }
  });

  test(`multi round-trip elicitation ${via.name} (Python SDK 2.x client): completes, requestState echoed exactly`, async () => {
    const mark = upstreamMark();
    const out = await runPython(via, 'confirm', 'rollback');
    assert.equal(out.ok, true, `${JSON.stringify(out)}\n${out.stderr}`);
    assert.equal(textOf(out.result.call), 'rollback confirmed by python');
    assert.equal(out.result.elicitations.length, 1);
    assert.equal(out.result.elicitations[0].message, 'Really rollback?');
    assertTwoRounds(mark, 'rollback');
    if (via.gateway) assertGatewayHop(mark, out.token);
  });
}

// ---------------------------------------------------------------------------
// a 2025-era client against the same server

const V1 = {
  Client: V1Client.Client,
  StreamableHTTPClientTransport: V1Http.StreamableHTTPClientTransport,
  ClientCredentialsProvider: V1Auth.ClientCredentialsProvider,
};

for (const via of [VIA.direct, VIA.gateway]) {
  test(`SDK v1 (2025-11-25) ${via.name}: initialize, tools/list${via.gateway ? ' without admin_stats' : ''}, echo, in a session${via.gateway ? ' bound by mcpgate' : ''}`, async () => {
    const mark = upstreamMark();
    const provider = via.gateway
      ? new V1.ClientCredentialsProvider({
          clientId: M2M.clientId,
          clientSecret: M2M.clientSecret,
          expectedIssuer: stack.as.issuer,
          scope: 'mcp:connect',
        })
      : undefined;
    const transport = new V1.StreamableHTTPClientTransport(new URL(via.url()), { authProvider: provider });
    const client = new V1.Client({ name: 'mcpgate-e2e-v1', version: '0.0.0' });
    try {
      await client.connect(transport);
      assert.equal(transport.protocolVersion, '2025-11-25');
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      assert.deepEqual(names, via.gateway ? ['echo', 'confirm_action', 'touch'] : ['echo', 'admin_stats', 'confirm_action', 'touch']);
      const result = await client.callTool({ name: 'echo', arguments: { message: 'legacy hi' } });
      assert.equal(textOf(result), 'Echo: legacy hi');

      const [init] = upstreamCalls(mark, 'initialize');
      assert.ok(init, 'initialize did not reach the upstream');
      const upstreamSession = init.responseHeaders?.['mcp-session-id'];
      assert.ok(upstreamSession, 'the server opened no session for the 2025 client');
      const later = mark.requests.filter((r) => r !== init && r.method === 'POST');
      assert.ok(later.length >= 3, 'notifications/initialized, tools/list and tools/call');
      for (const r of later) assert.equal(r.headers['mcp-session-id'], upstreamSession, r.body.slice(0, 200));
      if (via.gateway) {
        assert.match(transport.sessionId ?? '', /^[0-9a-f]{32}$/, "the client should hold mcpgate's own session id");
        assert.notEqual(transport.sessionId, upstreamSession, "the upstream's session id reached the client");
        assertGatewayHop(mark, provider.tokens()?.access_token);
      } else {
        assert.equal(transport.sessionId, upstreamSession);
      }
    } finally {
      await client.close().catch(() => {});
    }
  });
}

describe('lib/modern-server.mjs is not server-everything', () => {
  test('server-everything 2026.8.31 does not answer server/discover (why this file has its own server)', async () => {
    const { startEverything } = await import('../lib/everything.mjs');
    const everything = await startEverything();
    try {
      const res = await postMcp(
        everything.url,
        {
          jsonrpc: '2.0',
          id: 1,
          method: 'server/discover',
          params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} } },
        },
        { headers: { 'mcp-protocol-version': MODERN, 'mcp-method': 'server/discover' } },
      );
      const text = await res.text();
      assert.equal(res.status, 400, text);
      assert.match(text, /Server not initialized/);
    } finally {
      await everything.stop();
    }
  });
});
