// mcpgate in front of a stdio MCP server (`upstream.command`): real
// server-everything in stdio mode, real oidc-provider tokens, and the official
// SDK v1 client (`@modelcontextprotocol/sdk`) doing client_credentials from the 401.
//
// What it proves:
// - The SDK client discovers everything from mcpgate's 401 (RFC 9728 -> RFC 8414
//   -> token) and then initializes, lists tools and calls echo on a child process
//   that mcpgate started for its session; the child's environment is exactly
//   `upstream.env`. A long-running tool's progress notifications reach the client
//   on the POST's SSE stream while the call is still running (the first one well
//   before the result), so mcpgate interleaves the child's stdout into SSE as it
//   comes.
// - One child per session: two principals (M2M, M2M_B) get two child processes of
//   mcpgate and two different mcpgate session ids; B naming A's session gets 404
//   `Session not found` (POST and DELETE) and neither child is touched.
// - The SDK's DELETE (transport.terminateSession()) is answered once that child has
//   exited and been reaped; the other child lives on.
// - idle_timeout (2 s): a session whose client holds no standalone GET stream has
//   its child stopped about 2 s after its last request (logged as idle); the SDK
//   client's next call then fails with the 404, and SDK v1 does not re-initialize
//   by itself: a new connect gets a new child. A client holding its GET stream
//   open is not idle: its child survives the same wait (see the test for why).
//
// Children are counted from /proc: the processes whose parent is mcpgate (the
// launcher `node_modules/.bin/mcp-server-everything` starts with `#!/usr/bin/env
// node`, and env execs node in place, so each session is exactly one child).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { M2M, M2M_B, decodeJwt, startAuthServer } from '../lib/as.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { describeLog, loggingFetch } from '../lib/logging-fetch.mjs';
import { expectedNoTokenChallenge } from '../lib/mcp.mjs';
import { childrenOf, freePort } from '../lib/procs.mjs';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EVERYTHING_BIN = path.join(E2E_DIR, 'node_modules', '.bin', 'mcp-server-everything');
/** The child's whole environment: the launcher needs `node` on PATH (ours first). */
const CHILD_ENV = {
  PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`,
  MCPGATE_E2E_STDIO: 'from-upstream-env',
};
const IDLE_MS = 2000;

const NOT_FOUND_BODY = { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } };
const ECHO = { name: 'echo', arguments: { message: 'hi' } };
const LONG_RUNNING = 'trigger-long-running-operation';

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

const sorted = (pids) => [...pids].sort((a, b) => a - b);

/** Poll until `ok()` or fail after `timeoutMs` with `describe()`. */
async function waitUntil(ok, { timeoutMs, describe }) {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out: ${describe()}`);
    await sleep(50);
  }
}

let as;
let gateway;
const open = []; // every SDK client, closed in after()

before(async () => {
  const gwPort = await freePort();
  as = await startAuthServer({ resource: `http://127.0.0.1:${gwPort}/mcp` });
  gateway = await startGateway({
    gwPort,
    issuer: as.issuer,
    upstreamYaml: `upstream:
  command: [${JSON.stringify(EVERYTHING_BIN)}, stdio]
  env: ${JSON.stringify(CHILD_ENV)}
  idle_timeout: ${IDLE_MS}ms
`,
  });
});
after(async () => {
  for (const client of open) await client.close().catch(() => {});
  await gateway?.stop();
  await as?.stop();
});

const children = () => childrenOf(gateway.proc.child.pid);
const gatewayLog = () => gateway.proc.output;

/**
 * An SDK v1 client with its own ClientCredentialsProvider (or `provider`, to reuse
 * one and its token) and a logging fetch. `standaloneStream: false` makes its fetch
 * answer the SDK's standalone GET itself with 405, which the SDK takes as "this
 * server has no GET stream": the client then holds no stream open between calls.
 */
function sdkClient(credentials, { provider, standaloneStream = true } = {}) {
  provider ??= new ClientCredentialsProvider({
    clientId: credentials.clientId,
    clientSecret: credentials.clientSecret,
    expectedIssuer: as.issuer,
    scope: 'mcp:connect',
  });
  const base = standaloneStream
    ? globalThis.fetch
    : (input, init = {}) =>
        (init.method ?? 'GET').toUpperCase() === 'GET' && String(input) === gateway.publicUrl
          ? Promise.resolve(new Response(null, { status: 405 }))
          : globalThis.fetch(input, init);
  const { fetch, log } = loggingFetch(base);
  const transport = new StreamableHTTPClientTransport(new URL(gateway.publicUrl), { authProvider: provider, fetch });
  const client = new Client({ name: 'mcpgate-e2e-stdio', version: '0.0.0' });
  open.push(client);
  return { client, transport, provider, log };
}

/** Connect, and return the pid of the one child that appeared for the new session. */
async function connectNewChild(sdk) {
  const before = children();
  await sdk.client.connect(sdk.transport);
  const added = children().filter((pid) => !before.includes(pid));
  assert.equal(added.length, 1, `one new child per session: before ${before}, now ${children()}`);
  assert.match(sdk.transport.sessionId ?? '', /^[0-9a-f]{32}$/, 'mcpgate session id');
  return added[0];
}

async function echo(client, message) {
  const result = await client.callTool({ name: 'echo', arguments: { message } });
  assert.notEqual(result.isError, true, JSON.stringify(result));
  assert.equal(textOf(result), `Echo: ${message}`);
}

/** One raw request to the MCP endpoint; returns { status, body }. */
async function raw(method, { token, sessionId, body }) {
  const res = await fetch(gateway.publicUrl, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-06-18',
      ...(body ? { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } : {}),
    },
    body: body && JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** A log line saying the child `pid` was stopped, and why (End::message in session.rs). */
const stoppedLine = (why, pid) => new RegExp(`MCP server process stopped \\(${why}\\)[^\\n]*\\bpid=${pid}\\b`);

/** Ends each client's session (DELETE) and closes it: a test leaves no child behind. */
async function endSessions(...sdks) {
  for (const sdk of sdks) {
    await sdk.transport.terminateSession();
    await sdk.client.close();
  }
  assert.deepEqual(children(), [], 'a child outlived its session');
}

// Each test opens the sessions it needs and ends them, so none depends on
// another having run before it.
describe('stdio upstream: one child process per MCP session', () => {
  test('SDK v1: discovery from the 401, tools/list, echo, the child env, progress streamed before the result', async () => {
    assert.deepEqual(children(), [], 'no child before the first session');
    const a = sdkClient(M2M);
    const pidA = await connectNewChild(a);

    const gw = gateway;
    assert.deepEqual(
      a.log.slice(0, 5).map((e) => `${e.method} ${e.url} -> ${e.status}`),
      [
        `POST ${gw.publicUrl} -> 401`,
        `GET ${gw.metadataUrl} -> 200`,
        `GET ${as.issuer}/.well-known/oauth-authorization-server -> 200`,
        `POST ${as.issuer}/token -> 200`,
        `POST ${gw.publicUrl} -> 200`,
      ],
      describeLog(a.log),
    );
    assert.equal(a.log[0].wwwAuthenticate, expectedNoTokenChallenge(gw));
    const tokenParams = new URLSearchParams(a.log[3].requestBody ?? '');
    assert.equal(tokenParams.get('grant_type'), 'client_credentials');
    assert.equal(tokenParams.get('resource'), gw.publicUrl);
    assert.match(gatewayLog(), new RegExp(`MCP server process started[^\\n]*\\bpid=${pidA}\\b`));

    const { tools } = await a.client.listTools();
    const names = tools.map((t) => t.name);
    for (const name of ['echo', 'get-env', LONG_RUNNING]) {
      assert.ok(names.includes(name), `tools/list lacked ${name}: ${names.join(', ')}`);
    }
    await echo(a.client, 'hi');

    // upstream.env is the child's whole environment: nothing of mcpgate's (or ours) leaks.
    const env = JSON.parse(textOf(await a.client.callTool({ name: 'get-env', arguments: {} })));
    assert.deepEqual(env, CHILD_ENV);

    // 3 steps over 1.2 s: each progress notification is written to the POST's SSE
    // stream as the child prints it, 0.4 s apart, the result last.
    const t0 = performance.now();
    const events = [];
    const result = await a.client.callTool(
      { name: LONG_RUNNING, arguments: { duration: 1.2, steps: 3 } },
      undefined,
      { onprogress: (p) => events.push({ ...p, at: performance.now() - t0 }) },
    );
    const resultAt = performance.now() - t0;
    assert.notEqual(result.isError, true, JSON.stringify(result));
    assert.match(textOf(result), /Long running operation completed\. Duration: 1\.2 seconds, Steps: 3\./);
    assert.deepEqual(
      events.map(({ progress, total }) => ({ progress, total })),
      [1, 2, 3].map((progress) => ({ progress, total: 3 })),
    );
    const timeline = JSON.stringify({ events, resultAt });
    // Not buffered until the end: the first step came ~0.8 s before the result.
    assert.ok(resultAt - events[0].at >= 500, `progress was not streamed ahead of the result: ${timeline}`);
    const call = a.log.findLast((e) => e.method === 'POST' && e.requestBody?.includes(LONG_RUNNING));
    assert.equal(call?.status, 200);
    assert.match(call.contentType ?? '', /^text\/event-stream\b/);
    assert.deepEqual(children(), [pidA], 'still the one child');
    await endSessions(a);
  });

  test("two principals: two children, two sessions; B naming A's session gets 404 and touches nothing", async () => {
    const a = sdkClient(M2M);
    const pidA = await connectNewChild(a);
    const b = sdkClient(M2M_B);
    const pidB = await connectNewChild(b);
    assert.notEqual(pidB, pidA);
    assert.deepEqual(children(), sorted([pidA, pidB]));
    assert.notEqual(b.transport.sessionId, a.transport.sessionId);
    await echo(b.client, 'from-b');

    const tokenA = a.provider.tokens().access_token;
    const tokenB = b.provider.tokens().access_token;
    assert.notEqual(decodeJwt(tokenA).payload.sub, decodeJwt(tokenB).payload.sub, 'two principals');

    const asB = { token: tokenB, sessionId: a.transport.sessionId };
    const post = await raw('POST', { ...asB, body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: ECHO } });
    assert.equal(post.status, 404, JSON.stringify(post.body));
    assert.deepEqual(post.body, NOT_FOUND_BODY);
    const del = await raw('DELETE', asB);
    assert.equal(del.status, 404, JSON.stringify(del.body));
    assert.deepEqual(del.body, NOT_FOUND_BODY);
    assert.deepEqual(children(), sorted([pidA, pidB]), "B's DELETE of A's session stopped a child");

    await echo(a.client, 'still-a');
    await endSessions(a, b);
  });

  test("the SDK's DELETE stops exactly that session's child, reaped before the 200", async () => {
    const a = sdkClient(M2M);
    const pidA = await connectNewChild(a);
    const b = sdkClient(M2M_B);
    const pidB = await connectNewChild(b);
    const sessionB = b.transport.sessionId;
    await b.transport.terminateSession(); // throws unless 200 (or 405)
    assert.deepEqual(children(), [pidA], 'B\'s child should be gone (and reaped) when DELETE is answered');
    assert.match(gatewayLog(), stoppedLine('MCP session deleted', pidB));
    await b.client.close();

    const after = await raw('DELETE', { token: b.provider.tokens().access_token, sessionId: sessionB });
    assert.equal(after.status, 404, 'the deleted session is gone');
    assert.deepEqual(after.body, NOT_FOUND_BODY);
    await echo(a.client, 'still-a');
    await endSessions(a);
  });

  test('idle_timeout: a child with no request for 2 s is stopped, the next call gets 404, a new connect a new child', async () => {
    // A holds the SDK's standalone GET stream open; its last request is its connect.
    const a = sdkClient(M2M);
    const pidA = await connectNewChild(a);
    const lastRequestA = Date.now();
    const c = sdkClient(M2M_B, { standaloneStream: false });
    const pidC = await connectNewChild(c);
    assert.deepEqual(children(), sorted([pidA, pidC]));
    assert.ok(
      c.log.some((e) => e.method === 'GET' && e.status === 405),
      `the client should have tried (and been refused) its standalone stream:\n${describeLog(c.log)}`,
    );
    // Taken before the request is sent: mcpgate's idle clock starts when it has
    // answered, which is after this and before the client sees the answer.
    const lastRequestC = performance.now();
    await echo(c.client, 'before-idle');

    // Halfway through the idle period nothing has happened yet.
    await sleep(IDLE_MS / 2);
    assert.deepEqual(children(), sorted([pidA, pidC]), 'C\'s child stopped before idle_timeout');

    // Stopped idle_timeout after its last request, plus the stop sequence (stdin
    // closed, up to 1 s, SIGTERM, up to 1 s) and a margin for a loaded machine.
    await waitUntil(() => !children().includes(pidC), {
      timeoutMs: IDLE_MS + 4000,
      describe: () => `C's child ${pidC} still running ${Math.round(performance.now() - lastRequestC)} ms after its last request`,
    });
    const reapedAfter = performance.now() - lastRequestC;
    assert.ok(reapedAfter >= IDLE_MS, `stopped after ${reapedAfter} ms, before idle_timeout`);
    assert.match(gatewayLog(), stoppedLine('MCP session ended after being idle', pidC));

    // A's client made no request for longer than idle_timeout too, but it holds
    // the SDK's standalone GET stream open, and mcpgate counts an open stream as
    // use (the idle clock starts when the last stream closes: a client listening
    // for server messages is not idle), so A's child lives on.
    assert.ok(Date.now() - lastRequestA > IDLE_MS, 'A should have been quiet for longer than idle_timeout');
    assert.ok(
      a.log.some((e) => e.method === 'GET' && e.status === 200 && /^text\/event-stream\b/.test(e.contentType ?? '')),
      `A's client should hold its standalone GET stream:\n${describeLog(a.log)}`,
    );
    assert.deepEqual(children(), [pidA]);

    // SDK v1 turns the 404 into a StreamableHTTPError and does not re-initialize
    // (it keeps the stale session id): the caller has to connect again.
    await assert.rejects(c.client.callTool(ECHO), (err) => {
      assert.equal(err.code, 404, String(err));
      assert.match(err.message, /Session not found/);
      return true;
    });
    assert.deepEqual(children(), [pidA], 'the failed call started no child');

    // A new connect (same provider: no new token) is a new session with a new child.
    const again = sdkClient(M2M_B, { provider: c.provider, standaloneStream: false });
    const pidAgain = await connectNewChild(again);
    assert.notEqual(again.transport.sessionId, c.transport.sessionId);
    assert.ok(!again.log.some((e) => e.url === `${as.issuer}/token`), 'the provider\'s token should have been reused');
    await echo(again.client, 'after-idle');
    await again.transport.terminateSession();
    await c.client.close();
    await again.client.close();
    assert.deepEqual(children(), [pidA]);

    // A is still served by its first child; its DELETE leaves mcpgate with none.
    await echo(a.client, 'still-a');
    await endSessions(a);
    assert.match(gatewayLog(), stoppedLine('MCP session deleted', pidA));
  });
});
