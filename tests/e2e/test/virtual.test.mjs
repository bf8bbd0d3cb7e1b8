// Virtual servers with real parts (issue #22): one mcpgate, three member routes
// and a virtual route `all` that merges them under prefixes:
//
//   /web/mcp   --> recorder --> server-everything (Streamable HTTP)      web_
//   /local/mcp --> server-everything over stdio (one child per session)  local_
//   /gql/mcp   --> the GraphQL example (examples/graphql), graphql-yoga  gql_
//   /all/mcp   --> upstream.virtual over web, local and gql, 10 items a page
//
// oidc-provider issues the tokens (RFC 8707 `resource` = /all/mcp). `web` guards
// get-sum with the scope web:sum.
//
// What it proves:
// - Both TypeScript SDK majors connect to `all` from its 401 and list, page by page,
//   exactly each member's own list under its prefix, in member order; a call of
//   each member's tool is answered by that member (the recorder sees `echo` under
//   its own name, the stdio child's environment is its route's `upstream.env`, the
//   GraphQL API gets the query); a call with a progress token, which
//   server-everything answers as an SSE stream with notifications first, gets its
//   result (the notifications are not relayed yet); prompts of both
//   server-everything members are listed and one is fetched from each. Pages are
//   cut before the policy filters them, so one can be short: the GraphQL
//   example's operations that need schema scopes no token here has are hidden.
//   SDK v1 asks for the scope it is given (web:sum included), v2 for the one the
//   401 names (mcp:connect), so only v1 sees web_get-sum.
// - A name under no prefix (nope_x) is refused as unknown by mcpgate, reaching no
//   member; a member's own unknown tool (web_nope) gets the member's own answer, as
//   server-everything gives it directly.
// - `web`'s scope rule holds through `all`: without web:sum, web_get-sum is not
//   listed and its call is 403 insufficient_scope naming web:sum (nothing reaches
//   server-everything), while local_get-sum (local has no such rule) works; with
//   web:sum it is listed and called.
// - The MCP Inspector CLI lists the first page of `all` and calls web_echo.
// - SIGHUP adding a fourth member (`more`, stdio), then one removing `gql`, while an
//   SDK client keeps calling each member through `all`: no call fails; the list
//   gains more_* tools (answered by the new member), then loses gql_* (a gql_ call
//   is then an unknown tool that reaches no API); the caller's session with `local`
//   (its stdio child) carries over both reloads. (Before the fix in members.rs a
//   reload opened new member sessions, and two calls that found none at once opened
//   one each: four children after the first reload instead of two.)
// - With web's server-everything stopped: its tools leave the list, the other
//   members (local, more) keep answering, a call of a web_ tool is a JSON-RPC error
//   naming the member, and /readyz on the admin listener says "degraded": web not
//   ready, its upstream unreachable; `all` degraded, naming its member web (it
//   serves on with the others).
//
// The tests run in order: the last ones reload the configuration and stop a member.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { decodeJwt, requestToken, startAuthServer } from '../lib/as.mjs';
import { startEverything } from '../lib/everything.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { startGraphqlServer } from '../lib/graphql-server.mjs';
import { describeLog } from '../lib/logging-fetch.mjs';
import { postMcp } from '../lib/mcp.mjs';
import { NODE22 } from '../lib/node22.mjs';
import { childrenOf, freePort, runProcess } from '../lib/procs.mjs';
import { startRecorder } from '../lib/recorder.mjs';
import {
  EVERYTHING_BIN,
  GRAPHQL_EXAMPLE,
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

const require = createRequire(import.meta.url);
const inspectorDir = path.dirname(require.resolve('@modelcontextprotocol/inspector/package.json'));
const INSPECTOR = path.join(inspectorDir, require(path.join(inspectorDir, 'package.json')).bin['mcp-inspector']);

const PAGE_SIZE = 10;
const PREFIXES = { web: 'web_', local: 'local_', gql: 'gql_', more: 'more_' };
const GQL_TOOLS = ['execute_operation_get_facts', 'get_operation_info'];
const FACT = { facts: [{ id: 'fact-1', title: 'Water is wet', body: 'At room temperature.' }] };

let as;
let everything;
let recorder;
let api;
let gateway;
let adminPort;
let auditDir;
let auditPath;
let allUrl;
let metadataUrl;
/** Each member's own tool and prompt names, from a client of its server. */
const own = {};
const open = [];

/** One member route. */
function memberYaml(name, origin) {
  const upstream = {
    web: httpUpstream(recorder.url),
    local: stdioUpstream(childEnv('local')),
    gql: graphqlUpstream(api.url),
    more: stdioUpstream(childEnv('more')),
  }[name];
  return `  - name: ${name}
    public_url: ${origin}/${name}/mcp
    upstream: ${upstream}
    scopes:
      initialize: [mcp:connect]
${name === 'web' ? '      tools: {get-sum: [web:sum]}\n' : ''}`;
}

/** The whole file: `members` and the virtual route over them. */
function configYaml(members) {
  const origin = new URL(allUrl).origin;
  return `# written by tests/e2e/test/virtual.test.mjs
server:
  listen: 127.0.0.1:${new URL(allUrl).port}
  admin_listen: 127.0.0.1:${adminPort}
auth:
  oauth:
    enabled: true
    authorization_servers: [${as.issuer}]
    issuers: [${as.issuer}]
    jwks:
      - url: ${as.issuer}/jwks
        algorithms: [RS256]
audit:
  path: ${auditPath}
routes:
${members.map((name) => memberYaml(name, origin)).join('')}  - name: all
    public_url: ${allUrl}
    upstream:
      virtual:
        page_size: ${PAGE_SIZE}
        members:
${members.map((name) => `          - {route: ${name}, prefix: ${PREFIXES[name]}}\n`).join('')}    scopes:
      initialize: [mcp:connect]
`;
}

/** Names a client of `transport` (no capabilities, as mcpgate's member client) is shown. */
async function ownNames(transport) {
  const client = new ClientV1({ name: 'mcpgate-e2e-virtual-direct', version: '0.0.0' });
  await client.connect(transport);
  const tools = [];
  for (let cursor; ; ) {
    const page = await client.listTools(cursor ? { cursor } : {});
    tools.push(...page.tools.map((t) => t.name));
    if (!(cursor = page.nextCursor)) break;
  }
  const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  await client.close();
  return { tools, prompts };
}

before(async () => {
  const gwPort = await freePort();
  adminPort = await freePort();
  const origin = `http://127.0.0.1:${gwPort}`;
  allUrl = `${origin}/all/mcp`;
  metadataUrl = `${origin}/.well-known/oauth-protected-resource/all/mcp`;
  as = await startAuthServer({ resource: allUrl, extraScopes: ['web:sum'] });
  everything = await startEverything();
  recorder = await startRecorder({ targetPort: everything.port });
  api = await startGraphqlServer({ schemaPath: path.join(GRAPHQL_EXAMPLE, 'schema.graphql') });
  auditDir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-e2e-virtual-'));
  auditPath = path.join(auditDir, 'audit.jsonl');
  gateway = await startGateway({ gwPort, configYaml: configYaml(['web', 'local', 'gql']) });
  own.web = await ownNames(new TransportV1(new URL(everything.url)));
  own.local = await ownNames(new StdioClientTransport({ command: EVERYTHING_BIN, args: ['stdio'], env: childEnv('local'), stderr: 'ignore' }));
  own.more = own.local;
  own.gql = { tools: GQL_TOOLS, prompts: [] };
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

/** A token for `all`. */
async function token(scope) {
  const { access_token: jwt } = await requestToken(as, { scope, resource: allUrl });
  assert.equal(decodeJwt(jwt).payload.aud, allUrl);
  return jwt;
}

/** An SDK client of `all`, connected. */
async function connect(sdk, scope = 'mcp:connect web:sum') {
  const c = routeSdkClient({ sdk, url: allUrl, issuer: as.issuer, scope, name: 'mcpgate-e2e-virtual', open });
  await c.client.connect(c.transport);
  return { ...c, sdk };
}

/**
 * Every page of `all`'s list (`tools` or `prompts`) through the SDK client `c`:
 * the names, and how many pages were asked for. SDK v1 returns one page a call
 * (its size is checked here); SDK v2's listTools() walks the pages itself.
 */
async function listAll(c, kind) {
  const asked = () => c.log.filter((e) => e.requestBody?.includes(`"${kind}/list"`)).length;
  const before = asked();
  const names = [];
  for (let cursor; ; ) {
    const params = cursor ? { cursor } : {};
    const page = kind === 'tools' ? await c.client.listTools(params) : await c.client.listPrompts(params);
    if (c.sdk === 'v1') assert.ok(page[kind].length <= PAGE_SIZE, `a page of ${page[kind].length}`);
    names.push(...page[kind].map((item) => item.name));
    if (!(cursor = page.nextCursor)) break;
    assert.ok(asked() - before < 50, 'the list does not end');
  }
  return { names, pages: asked() - before };
}

/**
 * What `all` must list of `kind` with these members: each one's own names under
 * its prefix, in member order; web_get-sum only with web:sum.
 */
const merged = (kind, members, { sum = true } = {}) =>
  members
    .flatMap((m) => own[m][kind].map((name) => `${PREFIXES[m]}${name}`))
    .filter((name) => sum || name !== 'web_get-sum');

/** A raw JSON-RPC request to `all` (stateless: no session). */
async function rpc(jwt, method, params) {
  const res = await postMcp(allUrl, { jsonrpc: '2.0', id: 5, method, params }, { token: jwt, headers: { 'mcp-protocol-version': '2025-06-18' } });
  const text = await res.text();
  return { status: res.status, challenge: res.headers.get('www-authenticate'), text, body: res.ok ? JSON.parse(text) : undefined };
}

/** What each member's call must show about the server that answered it. */
const CALLS = {
  web: {
    tool: 'web_echo',
    arguments: (tag) => ({ message: `via web ${tag}` }),
    check(result, tag) {
      assert.equal(textOf(result), `Echo: via web ${tag}`);
      // server-everything got the call under its own name.
      const seen = recorder.requests.find((r) => r.body.includes(`via web ${tag}`));
      assert.ok(seen, 'the recorder did not see the echo');
      assert.equal(JSON.parse(seen.body).params.name, 'echo');
    },
  },
  local: {
    tool: 'local_get-env',
    arguments: () => ({}),
    check(result) {
      // Only the stdio child has the route's `upstream.env`.
      assert.deepEqual(JSON.parse(textOf(result)), childEnv('local'));
    },
  },
  more: {
    tool: 'more_get-env',
    arguments: () => ({}),
    check(result) {
      assert.deepEqual(JSON.parse(textOf(result)), childEnv('more'));
    },
  },
  gql: {
    tool: 'gql_execute_operation_get_facts',
    arguments: () => ({ limit: 1 }),
    check(result) {
      assert.deepEqual(result.structuredContent, FACT);
    },
  },
};

describe('virtual server: three real members under one route', () => {
  for (const sdk of Object.keys(SDKS)) {
    test(`SDK ${sdk}: discovery from all's 401, every page of the merged tools, one call per member answered by it, prompts`, async () => {
      const c = await connect(sdk);
      const first = c.log[0];
      assert.equal(`${first.method} ${first.url} -> ${first.status}`, `POST ${allUrl} -> 401`, describeLog(c.log));
      assert.match(first.wwwAuthenticate, new RegExp(`resource_metadata="${metadataUrl}"`));
      assert.equal(decodeJwt(c.provider.tokens().access_token).payload.aud, allUrl);

      // SDK v1 asks for the scope it was given; v2 for the one the 401 names.
      const scope = decodeJwt(c.provider.tokens().access_token).payload.scope;
      assert.equal(scope, sdk === 'v1' ? 'mcp:connect web:sum' : 'mcp:connect');

      const tools = await listAll(c, 'tools');
      assert.deepEqual(tools.names, merged('tools', ['web', 'local', 'gql'], { sum: sdk === 'v1' }));
      // 31 items before the policy filters each page: 13 + 13 from server-everything, the
      // GraphQL example's 5 tools, 3 of which need scopes from its schema that no token here has.
      assert.equal(tools.pages, 4);

      for (const member of ['web', 'local', 'gql']) {
        const call = CALLS[member];
        const tag = `${sdk}-${Date.now()}`;
        const apiCount = (await api.lastRequest()).count;
        const result = await c.client.callTool({ name: call.tool, arguments: call.arguments(tag) });
        assert.notEqual(result.isError, true, `${member}: ${JSON.stringify(result)}`);
        call.check(result, tag);
        assert.equal((await api.lastRequest()).count - apiCount, member === 'gql' ? 1 : 0, member);
      }

      // A call with a progress token, which server-everything answers with an SSE
      // stream of progress notifications before the result: the result comes back.
      // (The virtual server does not relay the members' notifications yet.)
      const long = await c.client.callTool(
        { name: 'web_trigger-long-running-operation', arguments: { duration: 0.2, steps: 2 } },
        undefined,
        { onprogress: () => {} },
      );
      assert.equal(textOf(long), 'Long running operation completed. Duration: 0.2 seconds, Steps: 2.');
      assert.ok(
        recorder.requests.some((r) => r.body.includes('"trigger-long-running-operation"') && r.body.includes('progressToken')),
        'the call did not reach server-everything with its progress token',
      );

      // Prompts: both server-everything members' (the GraphQL example has none).
      const prompts = await listAll(c, 'prompts');
      assert.deepEqual(prompts.names, merged('prompts', ['web', 'local']));
      assert.ok(prompts.names.includes('web_args-prompt'), prompts.names.join(', '));
      for (const member of ['web', 'local']) {
        const city = `${member}-${sdk}`;
        const recorded = recorder.requests.length;
        const prompt = await c.client.getPrompt({ name: `${member}_args-prompt`, arguments: { city } });
        assert.equal(prompt.messages[0].content.text, `What's weather in ${city}?`);
        const atWeb = recorder.requests.slice(recorded).filter((r) => r.body.includes('"prompts/get"'));
        assert.deepEqual(atWeb.map((r) => JSON.parse(r.body).params.name), member === 'web' ? ['args-prompt'] : []);
      }
      await c.client.close();
    });
  }

  test('unknown names: nope_x is refused by mcpgate, reaching no member; web_nope gets server-everything\'s own answer', async () => {
    const jwt = await token('mcp:connect web:sum');
    const recorded = recorder.requests.length;
    const apiCount = (await api.lastRequest()).count;
    const nope = await rpc(jwt, 'tools/call', { name: 'nope_x', arguments: {} });
    assert.equal(nope.status, 200, nope.text);
    assert.deepEqual(nope.body.error, { code: -32602, message: 'unknown tool: nope_x' });
    assert.equal(recorder.requests.length, recorded, 'nope_x reached server-everything');
    assert.equal((await api.lastRequest()).count, apiCount, 'nope_x reached the GraphQL API');

    // The same request straight to server-everything, as the member's own name.
    const direct = new ClientV1({ name: 'mcpgate-e2e-virtual-direct', version: '0.0.0' });
    const directTransport = new TransportV1(new URL(everything.url));
    await direct.connect(directTransport);
    const directAnswer = await direct.callTool({ name: 'nope', arguments: {} }).then(
      (result) => ({ result }),
      (error) => ({ error: { code: error.code, message: error.message } }),
    );
    await directTransport.terminateSession().catch(() => {});
    await direct.close();

    const webNope = await rpc(jwt, 'tools/call', { name: 'web_nope', arguments: {} });
    assert.equal(webNope.status, 200, webNope.text);
    const asked = recorder.requests.slice(recorded).filter((r) => r.body.includes('"tools/call"'));
    assert.deepEqual(asked.map((r) => JSON.parse(r.body).params.name), ['nope'], 'server-everything was asked for nope');
    if (directAnswer.result) {
      assert.deepEqual(webNope.body.result, directAnswer.result);
    } else {
      assert.equal(webNope.body.error.code, directAnswer.error.code, webNope.text);
      assert.match(directAnswer.error.message, new RegExp(webNope.body.error.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    }
    assert.match(webNope.text, /\bnope\b/);
    assert.doesNotMatch(webNope.text, /web_nope/);
  });

  test('web\'s scope rule through all: without web:sum, web_get-sum is not listed and its call is 403 naming web:sum; with it, listed and called', async () => {
    const sum = { name: 'web_get-sum', arguments: { a: 2, b: 3 } };
    const without = await token('mcp:connect');
    const c = await connect('v2', 'mcp:connect');
    const names = (await listAll(c, 'tools')).names;
    assert.ok(!names.includes('web_get-sum'), names.join(', '));
    assert.ok(names.includes('web_echo') && names.includes('local_get-sum'), names.join(', '));
    assert.deepEqual(names, merged('tools', ['web', 'local', 'gql'], { sum: false }));
    const recorded = recorder.requests.length;
    const refused = await rpc(without, 'tools/call', sum);
    assert.equal(refused.status, 403, refused.text);
    assert.equal(
      refused.challenge,
      `Bearer error="insufficient_scope", scope="web:sum", resource_metadata="${metadataUrl}", ` +
        'error_description="insufficient scopes for tool web_get-sum"',
    );
    assert.equal(recorder.requests.length, recorded, 'the refused call reached server-everything');
    await auditLog(auditPath).record((r) => r.route === 'all' && r.tool === 'web_get-sum' && r.status === 403, 'the refusal');
    // local has no such rule.
    const local = await c.client.callTool({ name: 'local_get-sum', arguments: { a: 2, b: 3 } });
    assert.match(textOf(local), /\b5\b/);
    await c.client.close();

    const withSum = await connect('v1', 'mcp:connect web:sum');
    assert.ok((await listAll(withSum, 'tools')).names.includes('web_get-sum'));
    const result = await withSum.client.callTool(sum);
    assert.match(textOf(result), /\b5\b/);
    assert.ok(recorder.requests.slice(recorded).some((r) => r.body.includes('"get-sum"')), 'get-sum did not reach server-everything');
    await withSum.client.close();
  });

  test('the MCP Inspector CLI lists all\'s first page and calls web_echo', async () => {
    const jwt = await token('mcp:connect web:sum');
    const inspector = (args) =>
      runProcess(NODE22, [INSPECTOR, '--cli', allUrl, '--transport', 'http', ...args, '--header', `Authorization: Bearer ${jwt}`], {
        timeoutMs: 60_000,
      });
    const listed = await inspector(['--method', 'tools/list']);
    assert.equal(listed.code, 0, `${listed.stdout}\n${listed.stderr}`);
    const page = JSON.parse(listed.stdout);
    assert.deepEqual(page.tools.map((t) => t.name), merged('tools', ['web', 'local', 'gql']).slice(0, PAGE_SIZE));
    assert.equal(page.nextCursor, String(PAGE_SIZE));
    const called = await inspector(['--method', 'tools/call', '--tool-name', 'web_echo', '--tool-arg', 'message=inspected']);
    assert.equal(called.code, 0, `${called.stdout}\n${called.stderr}`);
    assert.equal(textOf(JSON.parse(called.stdout)), 'Echo: inspected');
  });

  /**
   * Two lanes of `c`'s calls, each member of `members` in turn, while the file is
   * replaced by `yaml` and reloaded; the calls that failed, and how many ended
   * before the reload and started after it.
   */
  async function reloadUnderCalls(c, members, yaml) {
    const calls = [];
    const failures = [];
    let stop = false;
    const loop = async (lane) => {
      for (let i = 0; !stop; i++) {
        const member = members[i % members.length];
        const tag = `reload-${lane}-${i}`;
        const started = Date.now();
        try {
          const result = await c.client.callTool({ name: CALLS[member].tool, arguments: CALLS[member].arguments(tag) });
          assert.notEqual(result.isError, true, JSON.stringify(result));
          CALLS[member].check(result, tag);
          calls.push({ started, ended: Date.now() });
        } catch (err) {
          failures.push(`${member} ${tag}: ${err.message}`);
        }
      }
    };
    let reloadedAt = Infinity;
    const loops = [loop(0), loop(1)];
    try {
      await sleep(1000);
      reloadedAt = await reloadGateway(gateway, yaml);
      await sleep(1500);
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    return {
      failures,
      before: calls.filter((call) => call.ended < reloadedAt).length,
      after: calls.filter((call) => call.started > reloadedAt).length,
    };
  }

  test('SIGHUP adds a fourth member, then removes one, while an SDK client keeps calling through all: no call fails, the list follows', async () => {
    const c = await connect('v2');
    await c.client.callTool({ name: 'local_echo', arguments: { message: 'first' } });
    // This caller's session with `local`: one stdio child.
    const localChildren = childrenOf(gateway.proc.child.pid);
    assert.equal(localChildren.length, 1, `${localChildren}`);

    const added = await reloadUnderCalls(c, ['web', 'local', 'gql'], configYaml(['web', 'local', 'gql', 'more']));
    assert.deepEqual(added.failures, [], 'calls failed across the reload');
    assert.ok(added.before >= 3 && added.after >= 3, `${added.before} calls before and ${added.after} after the reload`);
    assert.deepEqual((await listAll(c, 'tools')).names, merged('tools', ['web', 'local', 'gql', 'more'], { sum: false }));
    CALLS.more.check(await c.client.callTool({ name: 'more_get-env', arguments: {} }));
    // The member sessions of kept members carried over the reload: the caller's
    // `local` child is the same, and `more` has started one more.
    const children = childrenOf(gateway.proc.child.pid);
    assert.equal(children.length, 2, `${localChildren} before the reload, ${children} after`);
    assert.ok(children.includes(localChildren[0]), `${localChildren} before the reload, ${children} after`);

    // gql leaves (its route too) while web, local and more are called.
    const removed = await reloadUnderCalls(c, ['web', 'local', 'more'], configYaml(['web', 'local', 'more']));
    assert.deepEqual(removed.failures, [], 'calls failed across the reload');
    assert.ok(removed.before >= 3 && removed.after >= 3, `${removed.before} calls before and ${removed.after} after the reload`);
    assert.deepEqual((await listAll(c, 'tools')).names, merged('tools', ['web', 'local', 'more'], { sum: false }));
    const apiCount = (await api.lastRequest()).count;
    const gone = await c.client.callTool({ name: 'gql_execute_operation_get_facts', arguments: { limit: 1 } }).then(
      (result) => assert.fail(`the removed member answered: ${JSON.stringify(result)}`),
      (error) => error,
    );
    assert.equal(gone.code, -32602, gone.message);
    assert.match(gone.message, /unknown tool: gql_execute_operation_get_facts/);
    assert.equal((await api.lastRequest()).count, apiCount, 'a call reached the removed member');
    assert.deepEqual(childrenOf(gateway.proc.child.pid), children, 'the kept members\' children changed');
    await c.client.close();
  });

  test('web\'s server stops: its tools leave the list, the others answer, its call names the member, /readyz says degraded', async () => {
    await recorder.stop();
    await everything.stop();
    const c = await connect('v1');
    const names = (await listAll(c, 'tools')).names;
    assert.deepEqual(names, merged('tools', ['local', 'more'], { sum: false }));
    for (const member of ['local', 'more']) {
      const result = await c.client.callTool({ name: CALLS[member].tool, arguments: CALLS[member].arguments('down') });
      CALLS[member].check(result, 'down');
    }
    const failed = await c.client.callTool({ name: 'web_echo', arguments: { message: 'down' } }).then(
      (result) => assert.fail(`web_echo answered: ${JSON.stringify(result)}`),
      (error) => error,
    );
    assert.equal(failed.code, -32603, failed.message);
    assert.match(failed.message, /member web could not answer/);
    const prompts = (await listAll(c, 'prompts')).names;
    assert.deepEqual(prompts, merged('prompts', ['local', 'more']));
    await c.client.close();

    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    const state = await ready.json();
    assert.equal(ready.status, 200, JSON.stringify(state));
    assert.equal(state.status, 'degraded', JSON.stringify(state));
    assert.deepEqual(Object.keys(state.routes).sort(), ['all', 'local', 'more', 'web']);
    assert.equal(state.routes.web.status, 'not_ready', JSON.stringify(state));
    assert.match(state.routes.web.reasons.join('\n'), new RegExp(`upstream 127\\.0\\.0\\.1:${recorder.port} unreachable`));
    for (const route of ['local', 'more']) assert.deepEqual(state.routes[route], { status: 'ready' }, route);
    assert.equal(state.routes.all.status, 'degraded', JSON.stringify(state));
    assert.match(state.routes.all.reasons.join('\n'), new RegExp(`^member web: upstream 127\\.0\\.0\\.1:${recorder.port} unreachable`));
  });
});
