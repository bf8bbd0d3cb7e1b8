// `routes:` with real parts (issue #22): one mcpgate, three routes on one listener,
// each with its own upstream, public_url, audience and scopes:
//
//   /everything/mcp --> recorder --> server-everything (Streamable HTTP)
//   /local/mcp      --> server-everything over stdio (one child of mcpgate per session)
//   /graphql/mcp    --> the GraphQL example (examples/graphql) against graphql-yoga
//
// and oidc-provider issuing tokens per route (RFC 8707 `resource` = the route's
// public_url). Each route's tools_call needs its own scope (everything:call,
// local:call, graphql:call).
//
// What it proves:
// - Both TypeScript SDK majors (v1 @modelcontextprotocol/sdk, v2
//   @modelcontextprotocol/client) find each route's own RFC 9728 document from its
//   401, get a token for that route, list that route's server's tools and call one:
//   echo reaches the HTTP server (seen by the recorder), get-env runs in the stdio
//   child (its environment is the route's `upstream.env`), an operation tool reaches
//   the GraphQL API.
// - SDK v2 pinned to 2026-07-28 on the graphql route: server/discover, tools/list and a
//   call with no initialize.
// - A token for one route is refused on each other route with 401 invalid_token and
//   that route's resource_metadata, and nothing behind it moves (no recorder request,
//   no child process, no API request), while the route's own token gets through; the
//   audit records carry the route.
// - Scopes are per route: a token holding local:call is refused echo on `everything`
//   with 403 naming everything:call (nothing upstream), and a token with the same
//   scopes gets echo on `local`.
// - Rules are per route: `everything`'s own rule refuses echo to m2m-b there (403
//   access_denied, echo cut from its list, nothing upstream); on `local`, which has no
//   rule, m2m-b lists and calls echo.
// - The conformance suite passes the same scenarios through the `everything` route as
//   directly against server-everything (lib/conformance.mjs, as test/conformance).
// - SIGHUP removing `graphql` and `gone`, adding `extra` and reversing the order of the
//   routes (kept routes are found by name, not place) while SDK clients keep calling
//   `everything` and `local`: no call fails, their sessions (and the stdio child) are
//   kept, the standing GET stream open on `gone` ends, `graphql` and `gone` answer
//   404, `extra` (the same upstream as `everything`) refuses `everything`'s session id
//   and serves an SDK client.
//
// The tests run in order: the last one reloads the configuration.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client as ClientV2 } from '@modelcontextprotocol/client';
import { M2M, M2M_B, decodeJwt, requestToken, startAuthServer } from '../lib/as.mjs';
import { compareConformance } from '../lib/conformance.mjs';
import { startEverything } from '../lib/everything.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { startGraphqlServer } from '../lib/graphql-server.mjs';
import { describeLog } from '../lib/logging-fetch.mjs';
import { openSession, postMcp } from '../lib/mcp.mjs';
import { childrenOf, freePort } from '../lib/procs.mjs';
import { startRecorder } from '../lib/recorder.mjs';
import {
  GRAPHQL_EXAMPLE as EXAMPLE,
  SDKS,
  auditLog,
  childEnv,
  graphqlUpstream,
  httpUpstream,
  reloadGateway,
  routeSdkClient,
  stdioUpstream,
  textOf,
} from '../lib/routes.mjs';

/** The stdio child's whole environment. */
const CHILD_ENV = childEnv('local');
const ROUTE_NAMES = ['everything', 'local', 'graphql', 'gone', 'extra'];
const CALL_SCOPES = ROUTE_NAMES.map((name) => `${name}:call`);

/** What audit records write instead of a token (docs/operations.md). */
const fingerprint = (token) => createHash('sha256').update(token).digest('hex').slice(0, 16);

let as;
let everything;
let recorder;
let api;
let gateway;
let auditDir;
let auditPath;
/** name -> { url, metadataUrl } for every route, those not configured yet included. */
const routes = {};
const open = []; // every SDK client, closed in after()

/** The YAML of one route. */
function routeYaml(name) {
  // everything, gone and extra: server-everything over HTTP, through the recorder.
  const http = httpUpstream(recorder.url);
  const upstream = {
    everything: http,
    gone: http,
    extra: http,
    local: stdioUpstream(CHILD_ENV),
    graphql: graphqlUpstream(api.url),
  }[name];
  return `  - name: ${name}
    public_url: ${routes[name].url}
    upstream: ${upstream}
    scopes:
      initialize: [mcp:connect]
      tools_call: [${name}:call]
${name === 'everything' ? EVERYTHING_RULES : ''}`;
}

/** The everything route's own rules: M2M_B may not use echo there (other routes have none). */
const EVERYTHING_RULES = `    rules:
      - {name: no-echo-for-b, when: {client_ids: [${M2M_B.clientId}]}, deny_tools: [echo]}
`;

/** The whole file, with these routes in this order. */
function configYaml(names) {
  return `# written by tests/e2e/test/routes.test.mjs
server:
  listen: 127.0.0.1:${new URL(routes.everything.url).port}
auth:
  oauth:
    enabled: true
    authorization_servers: [${as.issuer}]
    issuers: [${as.issuer}]
    jwks:
      - url: ${as.issuer}/jwks
        algorithms: [RS256]
# No token carries this scope: a route that inherited the file's scopes would show.
scopes:
  initialize: [mcp:never-used]
audit:
  path: ${auditPath}
routes:
${names.map(routeYaml).join('')}`;
}

before(async () => {
  const gwPort = await freePort();
  const origin = `http://127.0.0.1:${gwPort}`;
  for (const name of ROUTE_NAMES) {
    routes[name] = {
      url: `${origin}/${name}/mcp`,
      metadataUrl: `${origin}/.well-known/oauth-protected-resource/${name}/mcp`,
    };
  }
  as = await startAuthServer({
    resource: routes.everything.url,
    resources: ROUTE_NAMES.slice(1).map((name) => routes[name].url),
    extraScopes: CALL_SCOPES,
  });
  everything = await startEverything();
  recorder = await startRecorder({ targetPort: everything.port });
  api = await startGraphqlServer({ schemaPath: path.join(EXAMPLE, 'schema.graphql') });
  auditDir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-e2e-routes-'));
  auditPath = path.join(auditDir, 'audit.jsonl');
  gateway = await startGateway({ gwPort, configYaml: configYaml(['everything', 'local', 'graphql', 'gone']) });
});

after(async () => {
  for (const client of open) await client.close().catch(() => {});
  await gateway?.stop();
  await api?.stop();
  await recorder?.stop();
  await everything?.stop();
  await as?.stop();
  if (auditDir) await rm(auditDir, { recursive: true, force: true });
});

const children = () => childrenOf(gateway.proc.child.pid);

/** A token from oidc-provider for `route` (its public_url as resource), for M2M or `client`. */
async function tokenFor(route, scope, client = M2M) {
  const { access_token: token } = await requestToken(as, { scope, resource: routes[route].url, ...client });
  assert.equal(decodeJwt(token).payload.aud, routes[route].url);
  return token;
}

/** A client of `sdk` for `route` that finds everything from the route's 401. */
function sdkClient(sdk, route, { scope = `mcp:connect ${route}:call` } = {}) {
  return routeSdkClient({ sdk, url: routes[route].url, issuer: as.issuer, scope, open });
}

const auditRecord = (match, what) => auditLog(auditPath).record(match, what);

/** What each route's call must show about the server that answered. */
const CALLS = {
  everything: {
    tool: 'echo',
    arguments: (tag) => ({ message: `via everything ${tag}` }),
    check(result, tag) {
      assert.equal(textOf(result), `Echo: via everything ${tag}`);
      // The HTTP server got exactly this call, through the recorder.
      assert.ok(
        recorder.requests.some((r) => r.body.includes('"tools/call"') && r.body.includes(`via everything ${tag}`)),
        'the recorder did not see the echo',
      );
    },
  },
  local: {
    tool: 'get-env',
    arguments: () => ({}),
    check(result) {
      // Only the stdio child has the route's `upstream.env`.
      const env = JSON.parse(textOf(result));
      assert.deepEqual(env, CHILD_ENV);
    },
  },
  graphql: {
    tool: 'execute_operation_get_facts',
    arguments: () => ({ limit: 1 }),
    check(result) {
      assert.deepEqual(result.structuredContent, { facts: [{ id: 'fact-1', title: 'Water is wet', body: 'At room temperature.' }] });
    },
  },
};

const EVERYTHING_TOOLS = ['echo', 'get-env', 'get-sum'];

describe('routes: three real upstreams behind one mcpgate', () => {
  for (const sdk of Object.keys(SDKS)) {
    for (const route of ['everything', 'local', 'graphql']) {
      test(`SDK ${sdk} on route ${route}: discovery from the route's 401, its token, its server's tools, one call`, async () => {
        const recorded = recorder.requests.length;
        const apiCount = (await api.lastRequest()).count;
        const childrenBefore = children();
        const c = sdkClient(sdk, route);
        await c.client.connect(c.transport);

        // The 401 names the route's own document, which names the route as the resource;
        // the token was asked for and issued to that resource.
        const first = c.log[0];
        assert.equal(`${first.method} ${first.url} -> ${first.status}`, `POST ${routes[route].url} -> 401`, describeLog(c.log));
        // The route's own scopes, not the file's (mcp:never-used) nor another route's.
        assert.equal(
          first.wwwAuthenticate,
          `Bearer realm="mcp", scope="mcp:connect", resource_metadata="${routes[route].metadataUrl}"`,
        );
        assert.ok(c.log.some((e) => e.url === routes[route].metadataUrl && e.status === 200), describeLog(c.log));
        const document = await (await fetch(routes[route].metadataUrl)).json();
        assert.equal(document.resource, routes[route].url);
        const schemaScopes = route === 'graphql' ? ['read:all', 'read:employee', 'read:fact', 'read:private'] : [];
        assert.deepEqual(document.scopes_supported, [`${route}:call`, 'mcp:connect', ...schemaScopes]);
        const tokenRequest = c.log.find((e) => e.url === `${as.issuer}/token`);
        assert.equal(new URLSearchParams(tokenRequest.requestBody).get('resource'), routes[route].url);
        assert.equal(decodeJwt(c.provider.tokens().access_token).payload.aud, routes[route].url);

        const names = (await c.client.listTools()).tools.map((t) => t.name).sort();
        if (route === 'graphql') {
          assert.deepEqual(names, ['execute_operation_get_facts', 'get_operation_info']);
        } else {
          for (const name of EVERYTHING_TOOLS) assert.ok(names.includes(name), names.join(', '));
          assert.ok(!names.some((n) => n.startsWith('execute_operation')), names.join(', '));
        }

        const call = CALLS[route];
        const tag = `${sdk}-${Date.now()}`;
        const result = await c.client.callTool({ name: call.tool, arguments: call.arguments(tag) });
        assert.notEqual(result.isError, true, JSON.stringify(result));
        call.check(result, tag);

        // Only this route's upstream moved.
        const newRequests = recorder.requests.length - recorded;
        const apiRequests = (await api.lastRequest()).count - apiCount;
        const newChildren = children().filter((pid) => !childrenBefore.includes(pid));
        assert.deepEqual(
          { http: newRequests > 0, graphql: apiRequests, stdio: newChildren.length },
          {
            http: route === 'everything',
            graphql: route === 'graphql' ? 1 : 0,
            stdio: route === 'local' ? 1 : 0,
          },
        );
        if (c.transport.sessionId) await c.transport.terminateSession();
        await c.client.close();
      });
    }
  }

  test('SDK v2 pinned to 2026-07-28 on route graphql: discovery, tools/list and a call with no initialize and no session', async () => {
    const apiCount = (await api.lastRequest()).count;
    const c = sdkClient('v2', 'graphql');
    const client = new ClientV2(
      { name: 'mcpgate-e2e-routes-modern', version: '0.0.0' },
      { versionNegotiation: { mode: { pin: '2026-07-28' } } },
    );
    open.push(client);
    await client.connect(c.transport);
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['execute_operation_get_facts', 'get_operation_info']);
    const result = await client.callTool({ name: 'execute_operation_get_facts', arguments: { limit: 1 } });
    CALLS.graphql.check(result);
    assert.equal((await api.lastRequest()).count, apiCount + 1);
    const mcp = c.log.filter((e) => e.url === routes.graphql.url);
    assert.ok(!mcp.some((e) => e.requestBody?.includes('"initialize"')), describeLog(c.log));
    assert.ok(mcp.some((e) => e.requestBody?.includes('"server/discover"') && e.status === 200), describeLog(c.log));
    assert.equal(decodeJwt(c.provider.tokens().access_token).payload.aud, routes.graphql.url);
    await client.close();
  });

  test('a token for one route is refused on the others (401, their document), nothing behind them moves', async () => {
    const allScopes = `mcp:connect ${CALL_SCOPES.join(' ')}`;
    const tokens = {};
    for (const route of ['everything', 'local', 'graphql']) tokens[route] = await tokenFor(route, allScopes);
    const facts = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'execute_operation_get_facts', arguments: {} } };
    const echo = { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'echo', arguments: { message: 'cross' } } };
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cross', version: '0' } } };
    const refused = async (route, token, body) => {
      const res = await postMcp(routes[route].url, body, { token });
      const text = await res.text();
      assert.equal(res.status, 401, `${route}: ${text}`);
      assert.equal(text, '');
      const challenge = res.headers.get('www-authenticate');
      assert.equal(
        challenge,
        'Bearer realm="mcp", error="invalid_token", error_description="token audience is not accepted", ' +
          `scope="mcp:connect", resource_metadata="${routes[route].metadataUrl}"`,
      );
      return challenge;
    };

    // graphql: another route's token never reaches the API; its own does.
    let apiCount = (await api.lastRequest()).count;
    for (const other of ['everything', 'local']) await refused('graphql', tokens[other], facts);
    assert.equal((await api.lastRequest()).count, apiCount, 'a refused call reached the GraphQL API');
    const allowed = await postMcp(routes.graphql.url, facts, { token: tokens.graphql });
    assert.equal(allowed.status, 200);
    assert.equal((await allowed.json()).result.isError, false);
    assert.equal((await api.lastRequest()).count, apiCount + 1);

    // everything: nothing reaches the HTTP server.
    const recorded = recorder.requests.length;
    for (const other of ['local', 'graphql']) {
      await refused('everything', tokens[other], initialize);
      await refused('everything', tokens[other], echo);
    }
    assert.equal(recorder.requests.length, recorded, 'a refused request reached server-everything');
    const own = await openSession(routes.everything.url, { token: tokens.everything });
    const echoed = await own.request('tools/call', echo.params);
    assert.equal(echoed.status, 200, echoed.text);
    assert.ok(recorder.requests.some((r) => r.body.includes('"cross"')), 'the route\'s own token reaches server-everything');
    await own.close();

    // local: no child process is started.
    const before = children();
    for (const other of ['everything', 'graphql']) await refused('local', tokens[other], initialize);
    assert.deepEqual(children(), before, 'a refused initialize started a stdio child');
    const session = await openSession(routes.local.url, { token: tokens.local });
    assert.equal(children().length, before.length + 1, 'the route\'s own token starts its child');
    await session.close();

    // The audit records name the route each refusal was on, and which token it was.
    const sub = decodeJwt(tokens.everything).payload.sub;
    for (const route of ['everything', 'local', 'graphql']) {
      for (const other of ['everything', 'local', 'graphql'].filter((r) => r !== route)) {
        const record = await auditRecord(
          (r) => r.route === route && r.token_fingerprint === fingerprint(tokens[other]),
          `${other}'s token on ${route}`,
        );
        assert.equal(record.status, 401, JSON.stringify(record));
        assert.equal(record.auth_result, 'bad_audience', JSON.stringify(record));
        assert.equal(record.subject, null, JSON.stringify(record));
      }
      const ok = await auditRecord((r) => r.route === route && r.token_fingerprint === fingerprint(tokens[route]), `${route}'s own token`);
      assert.equal(ok.status, 200, JSON.stringify(ok));
      assert.equal(ok.subject, sub);
    }
  });

  test('scopes per route: local:call is not everything:call (403 naming it, nothing upstream); the same scopes work on local', async () => {
    const scope = 'mcp:connect local:call graphql:call';
    const onEverything = await openSession(routes.everything.url, { token: await tokenFor('everything', scope) });
    const recorded = recorder.requests.length;
    const refused = await onEverything.request('tools/call', { name: 'echo', arguments: { message: 'scoped' } });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(
      refused.challenge,
      `Bearer error="insufficient_scope", scope="everything:call", resource_metadata="${routes.everything.metadataUrl}", ` +
        'error_description="missing required scopes: everything:call"',
    );
    assert.equal(recorder.requests.length, recorded, 'the refused call reached server-everything');
    await onEverything.close();

    const onLocal = await openSession(routes.local.url, { token: await tokenFor('local', scope) });
    const echoed = await onLocal.request('tools/call', { name: 'echo', arguments: { message: 'scoped' } });
    assert.equal(echoed.status, 200, echoed.text);
    assert.equal(echoed.message.result.content[0].text, 'Echo: scoped');
    await onLocal.close();

    // And the other way round: everything:call is not local:call.
    const swapped = 'mcp:connect everything:call';
    const onLocal2 = await openSession(routes.local.url, { token: await tokenFor('local', swapped) });
    const refusedLocal = await onLocal2.request('tools/call', { name: 'echo', arguments: { message: 'scoped' } });
    assert.equal(refusedLocal.status, 403, refusedLocal.text);
    assert.match(refusedLocal.challenge, new RegExp(`scope="local:call", resource_metadata="${routes.local.metadataUrl}"`));
    await onLocal2.close();
    const onEverything2 = await openSession(routes.everything.url, { token: await tokenFor('everything', swapped) });
    const echoed2 = await onEverything2.request('tools/call', { name: 'echo', arguments: { message: 'scoped' } });
    assert.equal(echoed2.status, 200, echoed2.text);
    await onEverything2.close();
  });

  test('rules per route: everything\'s rule refuses echo to m2m-b there (403 access_denied, cut from the list); local has no such rule', async () => {
    const onEverything = await openSession(routes.everything.url, {
      token: await tokenFor('everything', 'mcp:connect everything:call', M2M_B),
    });
    const listed = await onEverything.request('tools/list');
    assert.equal(listed.status, 200, listed.text);
    const everythingNames = listed.message.result.tools.map((t) => t.name);
    assert.ok(!everythingNames.includes('echo'), everythingNames.join(', '));
    assert.ok(everythingNames.includes('get-env'), everythingNames.join(', '));
    const recorded = recorder.requests.length;
    const refused = await onEverything.request('tools/call', { name: 'echo', arguments: { message: 'ruled' } });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(
      refused.challenge,
      `Bearer realm="mcp", error="access_denied", resource_metadata="${routes.everything.metadataUrl}", ` +
        'error_description="tool echo refused by rule no-echo-for-b (deny_tools)"',
    );
    assert.equal(recorder.requests.length, recorded, 'the refused call reached server-everything');
    await onEverything.close();
    await auditRecord(
      (r) => r.route === 'everything' && r.denied_by_rule === 'no-echo-for-b' && r.oauth_client_id === M2M_B.clientId,
      'the rule\'s denial',
    );

    const onLocal = await openSession(routes.local.url, { token: await tokenFor('local', 'mcp:connect local:call', M2M_B) });
    const localNames = (await onLocal.request('tools/list')).message.result.tools.map((t) => t.name);
    assert.ok(localNames.includes('echo'), localNames.join(', '));
    const echoed = await onLocal.request('tools/call', { name: 'echo', arguments: { message: 'ruled' } });
    assert.equal(echoed.status, 200, echoed.text);
    assert.equal(echoed.message.result.content[0].text, 'Echo: ruled');
    await onLocal.close();
  });

  test('conformance through the everything route: the same scenarios pass as directly', async (t) => {
    const workDir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-routes-conformance-'));
    try {
      await compareConformance(t, {
        directUrl: everything.url,
        gatewayUrl: routes.everything.url,
        token: await tokenFor('everything', 'mcp:connect everything:call'),
        recorder,
        workDir,
      });
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });

  test('SIGHUP removes graphql and gone, adds extra and reorders while SDK clients keep calling everything and local: no call fails', async () => {
    const callers = {};
    for (const route of ['everything', 'local']) {
      const c = sdkClient('v1', route);
      await c.client.connect(c.transport);
      callers[route] = { ...c, sessionId: c.transport.sessionId, calls: [], failures: [] };
    }
    const localChildren = children();
    assert.equal(localChildren.length, 1, `one stdio child: ${localChildren}`);
    // A standing GET stream (server-everything's notifications) on `gone`, which the
    // reload removes: it must end then, not go on relaying a removed route's server.
    const goneToken = await tokenFor('gone', 'mcp:connect gone:call');
    const goneSession = await openSession(routes.gone.url, { token: goneToken });
    const goneStream = await fetch(routes.gone.url, {
      headers: { ...goneSession.headers, authorization: `Bearer ${goneToken}`, accept: 'text/event-stream' },
    });
    assert.equal(goneStream.status, 200);
    assert.match(goneStream.headers.get('content-type'), /^text\/event-stream/);
    const goneReader = goneStream.body.getReader();
    const goneEnded = (async () => {
      while (!(await goneReader.read()).done);
      return Date.now();
    })();

    let reloadedAt = Infinity;
    let stop = false;
    // Two calls in flight per route at all times, until told to stop.
    const loop = async (route, lane) => {
      const caller = callers[route];
      for (let i = 0; !stop; i++) {
        const message = `${route}-${lane}-${i}`;
        const started = Date.now();
        try {
          const result = await caller.client.callTool({ name: 'echo', arguments: { message } });
          assert.equal(textOf(result), `Echo: ${message}`);
          caller.calls.push({ started, ended: Date.now() });
        } catch (err) {
          caller.failures.push(`${message}: ${err.message}`);
        }
      }
    };
    const loops = ['everything', 'local'].flatMap((route) => [loop(route, 0), loop(route, 1)]);
    try {
      await sleep(1000);
      // Reversed: a kept route found by its place instead of its name would lose its sessions.
      reloadedAt = await reloadGateway(gateway, configYaml(['extra', 'local', 'everything']));
      await sleep(1000);
    } finally {
      stop = true;
      await Promise.all(loops);
    }

    for (const [route, caller] of Object.entries(callers)) {
      assert.deepEqual(caller.failures, [], `${route}: calls failed across the reload`);
      const after = caller.calls.filter((c) => c.started > reloadedAt).length;
      const before = caller.calls.filter((c) => c.ended < reloadedAt).length;
      assert.ok(before >= 5 && after >= 5, `${route}: ${before} calls before and ${after} after the reload`);
      // The session carried on: no new initialize, the same id.
      assert.equal(caller.transport.sessionId, caller.sessionId);
      const initialized = caller.log.filter((e) => e.requestBody?.includes('"initialize"') && e.status === 200);
      assert.equal(initialized.length, 1, describeLog(caller.log));
    }
    assert.deepEqual(children(), localChildren, 'the unchanged stdio route kept its session\'s child');
    const endedAt = await Promise.race([goneEnded, sleep(5000).then(() => null)]);
    assert.ok(endedAt !== null && endedAt >= reloadedAt - 1000, 'the removed route\'s GET stream outlived the reload');

    // graphql and gone are gone: their endpoints and their documents.
    const gonePost = await goneSession.request('ping');
    assert.equal(gonePost.status, 404);
    const token = await tokenFor('graphql', 'mcp:connect graphql:call');
    const gone = await postMcp(routes.graphql.url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token });
    assert.equal(gone.status, 404);
    await gone.arrayBuffer();
    const goneDocument = await fetch(routes.graphql.metadataUrl);
    assert.equal(goneDocument.status, 404);
    await goneDocument.arrayBuffer();

    // extra has the same upstream as everything, but everything's session is unknown
    // there, to the same client with extra's token: 404, nothing upstream.
    const recorded = recorder.requests.length;
    const foreign = await postMcp(
      routes.extra.url,
      { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { message: 'foreign' } } },
      {
        token: await tokenFor('extra', 'mcp:connect extra:call'),
        headers: { 'mcp-session-id': callers.everything.sessionId, 'mcp-protocol-version': '2025-06-18' },
      },
    );
    assert.equal(foreign.status, 404);
    assert.deepEqual(await foreign.json(), { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } });
    assert.equal(recorder.requests.length, recorded, 'a foreign session id reached server-everything');

    // extra serves: an SDK v2 client discovers it and calls echo.
    const extra = sdkClient('v2', 'extra');
    await extra.client.connect(extra.transport);
    const result = await extra.client.callTool({ name: 'echo', arguments: { message: 'added' } });
    assert.equal(textOf(result), 'Echo: added');
    await auditRecord((r) => r.route === 'extra' && r.method === 'tools/call' && r.status === 200, 'the call on extra');

    for (const caller of Object.values(callers)) {
      await caller.transport.terminateSession();
      await caller.client.close();
    }
    await extra.client.close();
  });
});
