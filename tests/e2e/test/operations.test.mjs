// Operations (issue #5) against real peers: the audit log, the admin
// listener's /healthz, /readyz and /metrics, hot reload on SIGHUP (a tightened
// rule applies to the next call; a broken file changes nothing), logrotate's
// rename-then-SIGHUP, and the SIGTERM drain.
//
// One stack (AS + server-everything + recorder + gateway) with
// `server.admin_listen` and `audit.path` set; the tests run in order and build
// on each other: the reload test leaves the get-env rule in force, the
// logrotate test leaves a rotated file beside the live one, and the last test
// stops the gateway.
//
// Every response of the gateway's MCP endpoint this file receives, from the
// SDK clients and from raw fetches alike, is noted with its x-request-id (the
// global fetch is wrapped for the file's lifetime). That is the ledger the
// audit files are checked against: exactly one record per request, none
// missing, none extra, none written twice across a rotation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { M2M, decodeJwt, requestToken } from '../lib/as.mjs';
import { DEFAULT_SCOPES_YAML, gatewayConfigYaml, startGateway } from '../lib/gateway.mjs';
import { INITIALIZE_BODY, expectedNoTokenChallenge, openSession, postMcp } from '../lib/mcp.mjs';
import { freePort } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

/** Every audit record has exactly these keys (null when unknown). */
const AUDIT_FIELDS = [
  'ts',
  'request_id',
  'route',
  'session_id',
  'http_method',
  'method',
  'tool',
  'resource',
  'prompt',
  'batch',
  'action',
  'auth_result',
  'auth_method',
  'subject',
  'issuer',
  'oauth_client_id',
  'api_key_id',
  'scopes',
  'mapped_scopes',
  'rules_matched',
  'denied_by_rule',
  'status',
  'reason',
  'latency_ms',
  'upstream_latency_ms',
  'token_fingerprint',
  'upstream_identity',
  'upstream_audience',
];

/** What the reload adds: the M2M tokens here carry only mcp:connect. */
const GET_ENV_RULE_SCOPES = `${DEFAULT_SCOPES_YAML}  tools:
    get-env: [[mcp:admin]]
`;
const GET_ENV = { name: 'get-env', arguments: {} };
const LONG_CALL = { name: 'trigger-long-running-operation', arguments: { duration: 3, steps: 3 } };

const fingerprint = (token) => createHash('sha256').update(token).digest('hex').slice(0, 16);
const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/** Poll `check` (sync or async) until it returns a truthy value, which is returned. */
async function until(check, { what, timeoutMs = 10_000 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Wait for `text` in what `proc` printed after offset `since` (a previous proc.output.length). */
function waitForOutput(proc, text, since) {
  return until(
    () => {
      if (proc.exitInfo) throw new Error(`${proc.name} exited (${JSON.stringify(proc.exitInfo)}):\n${proc.output}`);
      return proc.output.slice(since).includes(text);
    },
    { what: `"${text}" in ${proc.name}'s output` },
  ).catch((err) => {
    err.message += `\n${proc.name} output since the mark:\n${proc.output.slice(since)}`;
    throw err;
  });
}

/** The records of one audit file, in order ([] when it does not exist), and its raw text. */
async function readAudit(file) {
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return { text: '', records: [] };
    throw err;
  }
  assert.ok(text === '' || text.endsWith('\n'), `${file} ends in a partial line`);
  const records = text
    .split('\n')
    .filter(Boolean)
    .map((line, i) => {
      try {
        return JSON.parse(line);
      } catch {
        return assert.fail(`${file} line ${i + 1} is not JSON: ${line}`);
      }
    });
  return { text, records };
}

/** Prometheus text -> [{ name, labels, value }]. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The series of `name` whose labels include all of `labels`. */
const series = (samples, name, labels = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
/** Their sum (0 when there is none yet: a counter series appears at its first increment). */
const metric = (samples, name, labels) => series(samples, name, labels).reduce((sum, s) => sum + s.value, 0);

/** Connect a TCP socket; resolves 'refused' or 'accepted'. */
function tcpProbe(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve('accepted');
    });
    sock.once('error', (err) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : err.code));
  });
}

describe('operations: audit log, admin listener, SIGHUP reload and logrotate, SIGTERM drain', () => {
  let stack;
  let dir; // audit files live here, apart from the gateway's own temp dir
  let auditPath;
  let rotatedPath;
  let adminUrl;
  let configYaml; // (scopesYaml) -> the gateway's config file with that scopes block
  const realFetch = globalThis.fetch;
  /** Every answer of the MCP endpoint: { method, status, requestId }. */
  const exchanges = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-e2e-ops-'));
    auditPath = path.join(dir, 'audit.jsonl');
    rotatedPath = `${auditPath}.1`;
    const adminPort = await freePort();
    adminUrl = `http://127.0.0.1:${adminPort}`;
    const extra = {
      serverExtra: `  admin_listen: 127.0.0.1:${adminPort}\n`,
      topExtra: `audit:\n  path: ${auditPath}\n`,
    };
    stack = await startStack({ gatewayOptions: () => extra });
    const base = {
      gwPort: new URL(stack.publicUrl).port,
      upstreamUrl: stack.recorder.url,
      issuer: stack.as.issuer,
      ...extra,
    };
    configYaml = (scopesYaml) => gatewayConfigYaml({ ...base, scopesYaml });

    globalThis.fetch = async (input, init = {}) => {
      const res = await realFetch(input, init);
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (url === stack.publicUrl) {
        const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
        exchanges.push({ method, status: res.status, requestId: res.headers.get('x-request-id') });
      }
      return res;
    };
  });
  after(async () => {
    globalThis.fetch = realFetch;
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Current + rotated audit files: every record, and every record by request_id. */
  async function allRecords() {
    const rotated = await readAudit(rotatedPath);
    const current = await readAudit(auditPath);
    const records = [...rotated.records, ...current.records];
    return { rotated, current, records, byId: new Map(records.map((r) => [r.request_id, r])) };
  }

  /** Wait until every exchange so far has its record in the audit files (the writer is asynchronous). */
  async function awaitRecords() {
    return until(
      async () => {
        const all = await allRecords();
        return exchanges.every((e) => all.byId.has(e.requestId)) && all;
      },
      { what: `audit records for all ${exchanges.length} requests` },
    );
  }

  /** The audit files hold exactly one record per exchange: none missing, none extra, none twice. */
  function assertLedger(records) {
    const ids = records.map((r) => r.request_id);
    const dupes = ids.filter((id, i) => ids.indexOf(id) !== i);
    assert.deepEqual(dupes, [], 'records written twice');
    assert.deepEqual(
      [...ids].sort(),
      exchanges.map((e) => e.requestId).sort(),
      'the audit records should be exactly the requests the clients made',
    );
    for (const e of exchanges) {
      const r = records.find((x) => x.request_id === e.requestId);
      assert.equal(r.status, e.status, `record ${e.requestId}: status`);
      assert.equal(r.http_method, e.method, `record ${e.requestId}: http_method`);
    }
  }

  async function scrape() {
    const res = await fetch(`${adminUrl}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parseMetrics(await res.text());
  }

  async function tokenWithConnectOnly() {
    const { access_token: token, scope } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl });
    assert.equal(scope, 'mcp:connect');
    return token;
  }

  /** A v1 SDK client that discovers everything from the 401 and gets an mcp:connect token. */
  function sdkClient({ reconnectionOptions } = {}) {
    const provider = new ClientCredentialsProvider({
      clientId: M2M.clientId,
      clientSecret: M2M.clientSecret,
      expectedIssuer: stack.as.issuer,
      scope: 'mcp:connect',
    });
    const transport = new StreamableHTTPClientTransport(new URL(stack.publicUrl), {
      authProvider: provider,
      reconnectionOptions,
    });
    const client = new Client({ name: 'mcpgate-e2e-operations', version: '0.0.0' });
    return { provider, transport, client };
  }

  /**
   * Connect, then wait for the answer to the standing GET stream the SDK opens
   * without awaiting it: closing the client before that answer arrives would
   * leave a request mcpgate audited but the ledger never saw.
   */
  async function connect(client, transport) {
    const from = exchanges.length;
    await client.connect(transport);
    await until(() => exchanges.slice(from).some((e) => e.method === 'GET'), { what: "the SDK's GET stream" });
  }

  const signal = (name) => process.kill(stack.gateway.proc.child.pid, name);

  test('audit: one complete record per request (SDK session, no token, garbage token); never the token', async () => {
    const startedAt = Date.now();
    const { provider, transport, client } = sdkClient();
    let token;
    let sessionId;
    try {
      await connect(client, transport);
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo'), 'tools/list lacked echo');
      const echo = await client.callTool({ name: 'echo', arguments: { message: 'audit me' } });
      assert.equal(textOf(echo), 'Echo: audit me');
      token = provider.tokens()?.access_token;
      sessionId = transport.sessionId;
    } finally {
      await client.close().catch(() => {});
    }
    assert.ok(token && sessionId);
    const sdkCount = exchanges.length;

    const noToken = await postMcp(stack.publicUrl, INITIALIZE_BODY);
    await noToken.arrayBuffer();
    assert.equal(noToken.status, 401);
    assert.equal(noToken.headers.get('www-authenticate'), expectedNoTokenChallenge(stack.gateway));
    const garbageToken = `garbage-${Date.now()}`;
    const garbage = await postMcp(stack.publicUrl, INITIALIZE_BODY, { token: garbageToken });
    await garbage.arrayBuffer();
    assert.equal(garbage.status, 401);

    // Every answer carried a request id of its own.
    assert.equal(exchanges.length, sdkCount + 2);
    for (const e of exchanges) assert.match(e.requestId ?? '', /^[0-9a-f]{32}$/, `x-request-id on ${JSON.stringify(e)}`);
    assert.equal(new Set(exchanges.map((e) => e.requestId)).size, exchanges.length, 'request ids repeat');

    const { current, records, byId } = await awaitRecords();
    assertLedger(records);
    assert.equal((await stat(auditPath)).mode & 0o777, 0o600, 'audit file mode');

    for (const r of records) {
      assert.deepEqual(Object.keys(r).sort(), [...AUDIT_FIELDS].sort(), `fields of ${JSON.stringify(r)}`);
      assert.match(r.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const ts = Date.parse(r.ts);
      assert.ok(ts >= startedAt - 1000 && ts <= Date.now(), `ts ${r.ts} outside the test`);
      assert.equal(typeof r.latency_ms, 'number');
      assert.ok(r.latency_ms >= 0);
      assert.equal(r.api_key_id, null);
      assert.equal(r.route, null, 'a file without routes: names no route');
      assert.equal(r.resource, null);
      assert.equal(r.prompt, null);
      assert.equal(r.batch, null);
    }

    // The token is never written, but its fingerprint ties the SDK's records together.
    assert.ok(!current.text.includes(token), 'the access token appears in the audit file');
    assert.ok(!current.text.includes(token.split('.')[2]), "the token's signature appears in the audit file");
    assert.ok(!current.text.includes(garbageToken), 'the garbage token appears in the audit file');

    const { payload } = decodeJwt(token);
    assert.ok(payload.sub, 'the client_credentials JWT has no sub');
    const allowed = records.filter((r) => r.action === 'allow');
    assert.equal(allowed.length, 5, 'initialize, initialized, the GET stream, tools/list, tools/call');
    for (const r of allowed) {
      const where = `allow record ${JSON.stringify(r)}`;
      assert.equal(r.auth_result, 'ok', where);
      assert.equal(r.auth_method, 'jwt', where);
      assert.equal(r.subject, payload.sub, where);
      assert.equal(r.issuer, stack.as.issuer, where);
      assert.equal(r.oauth_client_id, M2M.clientId, where);
      assert.equal(r.scopes, 'mcp:connect', where);
      assert.equal(r.token_fingerprint, fingerprint(token), where);
      assert.equal(r.session_id, sessionId, where);
      assert.equal(r.reason, null, where);
      assert.ok(r.status >= 200 && r.status < 300, where);
      assert.equal(typeof r.upstream_latency_ms, 'number', where);
      assert.ok(r.upstream_latency_ms <= r.latency_ms, where);
    }
    const allowedPost = (method) => allowed.filter((r) => r.http_method === 'POST' && r.method === method);
    assert.equal(allowed.filter((r) => r.http_method === 'GET' && r.method === null).length, 1);
    assert.equal(allowedPost('initialize').length, 1);
    assert.equal(allowedPost('notifications/initialized').length, 1);
    assert.equal(allowedPost('tools/list').length, 1);
    assert.deepEqual(
      allowedPost('tools/call').map((r) => [r.tool, r.status]),
      [['echo', 200]],
    );

    // Refusals: the SDK's first initialize and our no-token request are `missing`,
    // the garbage token is a malformed credential; none was read or forwarded.
    const denied = records.filter((r) => r.action === 'deny');
    assert.equal(denied.length, 3, JSON.stringify(denied));
    const sdkFirst = byId.get(exchanges[0].requestId);
    for (const r of [sdkFirst, byId.get(noToken.headers.get('x-request-id'))]) {
      assert.equal(r.action, 'deny');
      assert.equal(r.status, 401);
      assert.equal(r.auth_result, 'missing');
      assert.equal(r.token_fingerprint, null);
    }
    const bad = byId.get(garbage.headers.get('x-request-id'));
    assert.equal(bad.status, 401);
    assert.equal(bad.auth_result, 'malformed');
    assert.equal(bad.token_fingerprint, fingerprint(garbageToken));
    assert.equal(typeof bad.reason, 'string');
    for (const r of denied) {
      const where = `deny record ${JSON.stringify(r)}`;
      assert.equal(r.http_method, 'POST', where);
      assert.equal(r.method, null, where);
      assert.equal(r.auth_method, null, where);
      assert.equal(r.subject, null, where);
      assert.equal(r.issuer, null, where);
      assert.equal(r.oauth_client_id, null, where);
      assert.equal(r.scopes, null, where);
      assert.equal(r.session_id, null, where);
      assert.equal(r.upstream_latency_ms, null, where);
    }
  });

  test('admin listener: /healthz, /readyz (200 here, 503 naming a dead upstream), /metrics counters move', async () => {
    const health = await fetch(`${adminUrl}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    const ready = await fetch(`${adminUrl}/readyz`);
    const readyBody = await ready.json();
    assert.equal(ready.status, 200, JSON.stringify(readyBody));
    assert.deepEqual(readyBody, { status: 'ready' });

    const N = 3;
    const first = exchanges.length;
    const m0 = await scrape();
    const token = await tokenWithConnectOnly();
    const session = await openSession(stack.publicUrl, { token });
    const m1 = await scrape();
    for (let i = 0; i < N; i++) {
      const r = await session.request('tools/call', { name: 'echo', arguments: { message: `n${i}` } });
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.equal(textOf(r.message.result), `Echo: n${i}`);
    }
    const denied = await postMcp(stack.publicUrl, { jsonrpc: '2.0', id: 9, method: 'tools/call', params: GET_ENV });
    await denied.arrayBuffer();
    assert.equal(denied.status, 401);
    await session.close();
    const m2 = await scrape();
    const mine = exchanges.slice(first);
    assert.equal(mine.length, N + 4, 'initialize, initialized, N calls, the refusal, DELETE');

    const delta = (name, labels) => metric(m2, name, labels) - metric(m0, name, labels);
    const requests = (method, decision, status, httpMethod = 'POST') =>
      delta('mcpgate_requests_total', { http_method: httpMethod, method, decision, status: String(status) });
    assert.equal(requests('tools/call', 'allow', 200), N);
    assert.equal(requests('none', 'deny', 401), 1);
    assert.equal(requests('initialize', 'allow', 200), 1);
    assert.equal(requests('notifications/*', 'allow', 202), 1);
    assert.equal(requests('none', 'allow', 200, 'DELETE'), 1);
    assert.equal(delta('mcpgate_requests_total'), mine.length, 'every request counted once');
    assert.equal(delta('mcpgate_auth_failures_total', { reason: 'missing' }), 1);
    assert.equal(delta('mcpgate_auth_failures_total'), 1);
    // Every request is timed; only forwarded ones wait for the upstream.
    assert.equal(delta('mcpgate_request_overhead_seconds_count'), mine.length);
    assert.equal(delta('mcpgate_upstream_duration_seconds_count'), mine.length - 1);
    // A fresh token: verified once, then served from the cache.
    assert.equal(delta('mcpgate_token_cache_total', { cache: 'verified', result: 'miss' }), 1);
    assert.equal(delta('mcpgate_token_cache_total', { cache: 'verified', result: 'hit' }), N + 2);
    // The session opened by initialize is counted until its DELETE.
    assert.equal(metric(m1, 'mcpgate_open_sessions') - metric(m0, 'mcpgate_open_sessions'), 1);
    assert.equal(metric(m2, 'mcpgate_open_sessions'), metric(m0, 'mcpgate_open_sessions'));

    const jwks = { provider: 'auth.oauth.jwks[0]' };
    assert.ok(metric(m2, 'mcpgate_jwks_fetches_total', { ...jwks, result: 'ok' }) >= 1);
    assert.equal(metric(m2, 'mcpgate_jwks_fetches_total', { ...jwks, result: 'error' }), 0);
    assert.equal(metric(m2, 'mcpgate_jwks_keys', jwks), 1, 'the AS publishes one signing key');
    for (const result of ['ok', 'error']) {
      assert.equal(series(m2, 'mcpgate_config_reloads_total', { result }).length, 1, `reloads{result="${result}"} missing`);
    }

    // The audit writer counts what reached the file: all of this test's records.
    const written0 = metric(m0, 'mcpgate_audit_records_total');
    await until(async () => metric(await scrape(), 'mcpgate_audit_records_total') - written0 === mine.length, {
      what: `mcpgate_audit_records_total to rise by ${mine.length}`,
    });
    const { records } = await awaitRecords();
    assertLedger(records);

    // A second gateway whose upstream port has nothing listening: alive, not ready.
    const deadPort = await freePort();
    const deadAdminPort = await freePort();
    const dead = await startGateway({
      gwPort: await freePort(),
      upstreamUrl: `http://127.0.0.1:${deadPort}/mcp`,
      issuer: stack.as.issuer,
      serverExtra: `  admin_listen: 127.0.0.1:${deadAdminPort}\n`,
    });
    try {
      const deadAdmin = `http://127.0.0.1:${deadAdminPort}`;
      assert.equal((await fetch(`${deadAdmin}/healthz`)).status, 200);
      const res = await fetch(`${deadAdmin}/readyz`);
      const body = await res.json();
      assert.equal(res.status, 503, JSON.stringify(body));
      assert.equal(body.status, 'not_ready');
      assert.ok(
        body.reasons.some((r) => r.startsWith(`upstream 127.0.0.1:${deadPort} unreachable: `)),
        JSON.stringify(body.reasons),
      );
    } finally {
      await dead.stop();
    }
  });

  test('SIGHUP reload: a new get-env rule refuses the next call in open sessions; a broken file changes nothing', async () => {
    const proc = stack.gateway.proc;
    const configPath = stack.gateway.configPath;
    // The file we rewrite is the one the gateway runs, with only the scopes block changed.
    assert.equal(await readFile(configPath, 'utf8'), configYaml(DEFAULT_SCOPES_YAML));

    const token = await tokenWithConnectOnly();
    const session = await openSession(stack.publicUrl, { token });
    const { transport, client } = sdkClient();
    try {
      await connect(client, transport);
      // Before: no rule, so an mcp:connect token may call get-env.
      const env = await client.callTool(GET_ENV);
      assert.notEqual(env.isError, true, JSON.stringify(env).slice(0, 300));
      assert.equal(JSON.parse(textOf(env)).PORT, String(stack.everything.port));

      const reloads = (samples, result) => metric(samples, 'mcpgate_config_reloads_total', { result });
      const m0 = await scrape();
      await writeFile(configPath, configYaml(GET_ENV_RULE_SCOPES));
      let mark = proc.output.length;
      signal('SIGHUP');
      await waitForOutput(proc, 'config reloaded', mark);
      const m1 = await scrape();
      assert.equal(reloads(m1, 'ok') - reloads(m0, 'ok'), 1);
      assert.equal(reloads(m1, 'error'), reloads(m0, 'error'));

      const assertRuleHolds = async () => {
        // The SDK session opened before the reload: v1 cannot step up, so it gives up.
        await assert.rejects(client.callTool(GET_ENV), /403/);
        const r = await session.request('tools/call', GET_ENV);
        assert.equal(r.status, 403, r.text.slice(0, 300));
        assert.match(r.challenge ?? '', /^Bearer /);
        assert.match(r.challenge, /error="insufficient_scope"/);
        assert.match(r.challenge, /scope="mcp:admin"/);
        // Other tools are untouched, in both sessions.
        assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { message: 'still' } })), 'Echo: still');
        const echo = await session.request('tools/call', { name: 'echo', arguments: { message: 'raw' } });
        assert.equal(echo.status, 200);
        assert.equal(textOf(echo.message.result), 'Echo: raw');
      };
      const refusalsBefore = exchanges.filter((e) => e.status === 403).length;
      await assertRuleHolds();

      // A file that does not parse: logged, counted, and the rule above stays.
      await writeFile(configPath, 'server: [this is not yaml\n');
      mark = proc.output.length;
      signal('SIGHUP');
      await waitForOutput(proc, 'config reload failed, the running config stays in force: ', mark);
      const m2 = await scrape();
      assert.equal(reloads(m2, 'error') - reloads(m1, 'error'), 1);
      assert.equal(reloads(m2, 'ok'), reloads(m1, 'ok'));
      assert.ok(!proc.output.slice(mark).includes('config reloaded'));
      await assertRuleHolds();

      // The refused calls never reached the upstream: it saw get-env once, before the reload.
      const upstreamGetEnv = stack.recorder.requests.filter((r) => r.body.includes('"get-env"'));
      assert.equal(upstreamGetEnv.length, 1);

      // And each refusal is a deny record: the credential was fine, the rule said no.
      // Per round: the SDK's call and its one retry with a fresh token, and the raw call.
      const refusals = exchanges.filter((e) => e.status === 403).slice(refusalsBefore);
      assert.equal(refusals.length, 6);
      const { byId } = await awaitRecords();
      for (const e of refusals) {
        const r = byId.get(e.requestId);
        assert.equal(r.action, 'deny');
        assert.equal(r.auth_result, 'ok');
        assert.equal(r.auth_method, 'jwt');
        assert.equal(r.method, 'tools/call');
        assert.equal(r.tool, 'get-env');
        assert.equal(r.upstream_latency_ms, null);
        assert.match(r.reason ?? '', /get-env/);
      }
    } finally {
      await client.close().catch(() => {});
      await session.close();
    }
  });

  test('logrotate: rename + SIGHUP; old and new file hold every record exactly once, new requests in the new file', async () => {
    const proc = stack.gateway.proc;
    const token = await tokenWithConnectOnly();
    const echo = async (session, message) => {
      const r = await session.request('tools/call', { name: 'echo', arguments: { message } });
      assert.equal(r.status, 200, r.text.slice(0, 300));
    };

    const session = await openSession(stack.publicUrl, { token });
    await echo(session, 'before the rename');
    await rename(auditPath, rotatedPath);
    // Until the signal the gateway still holds the renamed file open: records go there.
    await echo(session, 'between rename and signal');
    const beforeSignal = exchanges.length;

    // A valid file again (the last reload left a broken one), so that "config
    // reloaded" says the SIGHUP, whose first step is the reopen, was handled.
    await writeFile(stack.gateway.configPath, configYaml(GET_ENV_RULE_SCOPES));
    const mark = proc.output.length;
    signal('SIGHUP');
    await waitForOutput(proc, 'config reloaded', mark);

    await echo(session, 'after the signal');
    const noToken = await postMcp(stack.publicUrl, INITIALIZE_BODY);
    await noToken.arrayBuffer();
    assert.equal(noToken.status, 401);
    await session.close();

    const { rotated, current, records } = await awaitRecords();
    assertLedger(records);
    const idsIn = (file) => new Set(file.records.map((r) => r.request_id));
    const [oldIds, newIds] = [idsIn(rotated), idsIn(current)];
    for (const e of exchanges.slice(0, beforeSignal)) {
      assert.ok(oldIds.has(e.requestId), `${e.requestId} (before the signal) should be in the rotated file`);
    }
    assert.deepEqual(
      [...newIds].sort(),
      exchanges.slice(beforeSignal).map((e) => e.requestId).sort(),
      'the new file should hold exactly the requests made after the signal',
    );
    assert.equal((await stat(auditPath)).mode & 0o777, 0o600, 'reopened audit file mode');
  });

  test('SIGTERM: stops accepting, lets an in-flight tool call finish, flushes the audit log, exits 0', async () => {
    const proc = stack.gateway.proc;
    const gwPort = Number(new URL(stack.publicUrl).port);
    // The standing GET stream ends at shutdown; with the gateway gone there is
    // nothing to reconnect to, so the SDK should not try.
    const noReconnect = {
      initialReconnectionDelay: 1000,
      maxReconnectionDelay: 1000,
      reconnectionDelayGrowFactor: 1,
      maxRetries: 0,
    };
    const { transport, client } = sdkClient({ reconnectionOptions: noReconnect });
    try {
      await connect(client, transport);
      let settled = false;
      const call = client.callTool(LONG_CALL).finally(() => {
        settled = true;
      });
      // In flight = the upstream has it (and is sleeping through its steps).
      await until(() => stack.recorder.requests.some((r) => r.body.includes(`"${LONG_CALL.name}"`)), {
        what: 'the long-running call to reach the upstream',
      });

      const mark = proc.output.length;
      signal('SIGTERM');
      const signalledAt = Date.now();
      // New connections are refused while the call is still running.
      await until(async () => (await tcpProbe(gwPort)) === 'refused', { what: 'the listener to close', timeoutMs: 2000 });
      assert.equal(settled, false, 'the call ended before the listener closed: not in flight');

      const result = await call;
      assert.ok(Date.now() - signalledAt >= 1000, 'the call should have run on well after SIGTERM');
      assert.equal(textOf(result), 'Long running operation completed. Duration: 3 seconds, Steps: 3.');

      assert.deepEqual(await proc.exited, { code: 0, signal: null });
      const log = proc.output.slice(mark);
      assert.match(log, /shutting down: finishing in-flight requests/);
      assert.match(log, /mcpgate stopped/);
      assert.doesNotMatch(log, /grace period over/);
      assert.doesNotMatch(log, /\b(ERROR|WARN)\b/);
    } finally {
      await client.close().catch(() => {});
    }

    // Read once, after the exit: whatever was queued must be on disk by now.
    const { records } = await allRecords();
    assertLedger(records);
    const calls = records.filter((r) => r.tool === LONG_CALL.name);
    assert.equal(calls.length, 1, JSON.stringify(calls));
    assert.equal(calls[0].action, 'allow');
    assert.equal(calls[0].status, 200);
    assert.equal(calls[0].method, 'tools/call');
  });
});
