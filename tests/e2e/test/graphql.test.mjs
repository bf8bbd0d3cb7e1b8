// A GraphQL API as MCP tools, end to end: the SDK v2 client discovers mcpgate
// from its 401, gets a token from oidc-provider, lists and calls the operation
// tools of examples/graphql/, and mcpgate runs them against a real GraphQL
// server (graphql-yoga, serving the example's schema). Scopes come from the
// schema's @requiresScopes: a token without them gets the seeds' 403. A client
// pinned to MCP 2026-07-28 gets the same tools with no initialize and no session.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Client, ClientCredentialsProvider, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { requestToken, startAuthServer, M2M } from '../lib/as.mjs';
import { REPO_ROOT, startGateway } from '../lib/gateway.mjs';
import { startGraphqlServer } from '../lib/graphql-server.mjs';
import { describeLog, loggingFetch } from '../lib/logging-fetch.mjs';
import { postMcp } from '../lib/mcp.mjs';
import { freePort } from '../lib/procs.mjs';

const EXAMPLE = path.join(REPO_ROOT, 'examples', 'graphql');
const API_CREDENTIAL = 'Bearer the-graphql-apis-own-key';
const SCHEMA_SCOPES = ['read:fact', 'read:all', 'read:employee', 'read:private'];
const STATIC_SCOPES = ['mcp:tools:read', 'mcp:tools:execute', 'mcp:graphql:execute'];

let as;
let api;
let gateway;
let publicUrl;

before(async () => {
  const gwPort = await freePort();
  publicUrl = `http://127.0.0.1:${gwPort}/mcp`;
  as = await startAuthServer({ resource: publicUrl, extraScopes: [...STATIC_SCOPES, ...SCHEMA_SCOPES] });
  api = await startGraphqlServer({ schemaPath: path.join(EXAMPLE, 'schema.graphql') });
  gateway = await startGateway({
    gwPort,
    issuer: as.issuer,
    upstreamYaml: `upstream:
  graphql:
    endpoint: ${api.url}
    schema: ${path.join(EXAMPLE, 'schema.graphql')}
    operations: ${path.join(EXAMPLE, 'operations')}
    headers: { Authorization: "${API_CREDENTIAL}" }
    exclude_mutations: true
    enable_arbitrary_operations: true
    scopes:
      execute_graphql: [mcp:graphql:execute]
`,
    scopesYaml: `scopes:
  initialize: [mcp:connect]
  tools_list: [mcp:tools:read]
  tools_call: [mcp:tools:execute]
`,
  });
});

after(async () => {
  await gateway?.stop();
  await api?.stop();
  await as?.stop();
});

/** Every header of the API's last request, and that it never carried `token`. */
async function assertApiSawOnlyItsOwnCredential(token) {
  const { count, request } = await api.lastRequest();
  assert.ok(count > 0, 'no request reached the GraphQL API');
  assert.equal(request.headers.authorization, API_CREDENTIAL);
  for (const [name, value] of Object.entries(request.headers)) {
    assert.ok(!String(value).includes(token), `the API saw the client's token in ${name}`);
  }
  return request;
}

test('SDK v2: discovery, tools listed by scope, step-up to call operation tools against graphql-yoga', async () => {
  const { fetch, log } = loggingFetch();
  const provider = new ClientCredentialsProvider({
    clientId: M2M.clientId,
    clientSecret: M2M.clientSecret,
    expectedIssuer: as.issuer,
    scope: 'mcp:connect',
  });
  const transport = new StreamableHTTPClientTransport(new URL(publicUrl), { authProvider: provider, fetch });
  const client = new Client({ name: 'mcpgate-e2e-graphql', version: '0.0.0' });
  const issuedBefore = as.issued.length;
  try {
    await client.connect(transport);
    assert.equal(client.getServerVersion()?.name, 'mcpgate-graphql');

    const metadata = await (await globalThis.fetch(gateway.metadataUrl)).json();
    assert.deepEqual(metadata.scopes_supported, [
      'mcp:connect',
      'mcp:graphql:execute',
      'mcp:tools:execute',
      'mcp:tools:read',
      'read:all',
      'read:employee',
      'read:fact',
      'read:private',
    ]);

    // The client steps up to tools_list's scope; the list then holds only the
    // tools whose fields need nothing more, and never a mutation.
    const listed = async () => (await client.listTools()).tools;
    let tools = await listed();
    assert.deepEqual(
      tools.map((t) => t.name).sort(),
      ['execute_operation_get_facts', 'get_operation_info'],
      describeLog(log),
    );
    const getFacts = tools.find((t) => t.name === 'execute_operation_get_facts');
    assert.deepEqual(Object.keys(getFacts.inputSchema.properties), ['limit']);
    assert.equal(getFacts.annotations?.readOnlyHint, true);

    // Calling a tool whose fields need read:fact: one 403 naming what is missing
    // (tools_call's scope and the field's), step-up, retry.
    const secret = await client.callTool({ name: 'execute_operation_get_top_secret_facts', arguments: {} });
    assert.notEqual(secret.isError, true, JSON.stringify(secret));
    assert.deepEqual(
      secret.structuredContent.topSecretFacts.map((f) => f.title),
      ['The launch date'],
    );
    const people = await client.callTool({ name: 'execute_operation_list_employees', arguments: { name: 'grace' } });
    assert.notEqual(people.isError, true, JSON.stringify(people));
    assert.deepEqual(people.structuredContent, { people: [{ name: 'Grace Hopper', manager: { name: 'Ada Lovelace' } }] });
    const text = people.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
    assert.match(text, /Grace Hopper/);

    const challenges = log.filter((e) => e.status === 403).map((e) => e.wwwAuthenticate);
    const metadataParam = `resource_metadata="${gateway.metadataUrl}"`;
    assert.deepEqual(challenges, [
      `Bearer error="insufficient_scope", scope="mcp:tools:read", ${metadataParam}, ` +
        'error_description="missing required scopes: mcp:tools:read"',
      `Bearer error="insufficient_scope", scope="mcp:tools:execute read:fact", ${metadataParam}, ` +
        'error_description="missing required scopes: mcp:tools:execute, read:fact"',
      `Bearer error="insufficient_scope", scope="read:employee", ${metadataParam}, ` +
        'error_description="insufficient scopes for tool execute_operation_list_employees"',
    ]);

    // The tokens the client got along the way, and the list the last one unlocks.
    const requested = as.issued.slice(issuedBefore).map((i) => i.requestedScope);
    assert.ok(requested.some((s) => s?.split(' ').includes('read:fact')), requested.join(' | '));
    assert.ok(requested.some((s) => s?.split(' ').includes('read:employee')), requested.join(' | '));
    tools = await listed();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes('execute_operation_list_employees'), names.join(', '));
    assert.ok(!names.includes('execute_operation_get_payroll'), names.join(', '));

    const token = provider.tokens()?.access_token;
    assert.ok(token, 'the provider stored no access token');
    const request = await assertApiSawOnlyItsOwnCredential(token);
    assert.deepEqual(request.body.variables, { name: 'grace' });
    assert.match(request.body.query, /query ListEmployees/);
  } finally {
    await client.close().catch(() => {});
  }
});

test('a token without the fields\' scopes gets the seeds\' 403 challenge, and the API sees nothing', async () => {
  const before = (await api.lastRequest()).count;
  const { access_token: token } = await requestToken(as, {
    scope: 'mcp:connect mcp:tools:execute',
    resource: publicUrl,
  });
  const call = (name, args = {}) =>
    postMcp(publicUrl, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }, { token });

  const refused = await call('execute_operation_get_top_secret_facts');
  assert.equal(refused.status, 403);
  assert.equal(
    refused.headers.get('www-authenticate'),
    `Bearer error="insufficient_scope", scope="read:fact", resource_metadata="${gateway.metadataUrl}", ` +
      'error_description="insufficient scopes for tool execute_operation_get_top_secret_facts"',
  );
  assert.equal(await refused.text(), '');

  const payroll = await call('execute_operation_get_payroll');
  assert.equal(payroll.status, 403);
  assert.match(payroll.headers.get('www-authenticate'), /scope="read:employee read:private"/);

  // A tool whose fields need nothing beyond tools_call answers.
  const facts = await call('execute_operation_get_facts', { limit: 1 });
  assert.equal(facts.status, 200);
  const answer = await facts.json();
  assert.equal(answer.result.isError, false, JSON.stringify(answer));
  assert.equal(answer.result.structuredContent.facts.length, 1);
  assert.equal((await api.lastRequest()).count, before + 1);
});

test('execute_graphql: the submitted query\'s fields decide, per request', async () => {
  const { access_token: token } = await requestToken(as, {
    scope: 'mcp:connect mcp:tools:execute mcp:graphql:execute read:fact',
    resource: publicUrl,
  });
  const run = (query) =>
    postMcp(
      publicUrl,
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'execute_graphql', arguments: { query } } },
      { token },
    );
  const refused = await run('{ employees { name salary } }');
  assert.equal(refused.status, 403);
  assert.equal(
    refused.headers.get('www-authenticate'),
    `Bearer error="insufficient_scope", scope="read:employee read:private", resource_metadata="${gateway.metadataUrl}", ` +
      'error_description="insufficient scopes for tool execute_graphql"',
  );
  const allowed = await run('{ topSecretFacts { title } status { healthy } }');
  assert.equal(allowed.status, 200);
  const answer = await allowed.json();
  assert.equal(answer.result.isError, false, JSON.stringify(answer));
  assert.deepEqual(answer.result.structuredContent, {
    topSecretFacts: [{ title: 'The launch date' }],
    status: { healthy: true },
  });
  await assertApiSawOnlyItsOwnCredential(token);
});

const MODERN = '2026-07-28';

test('SDK v2 pinned to 2026-07-28: server/discover, tools/list and tools/call with no initialize and no session', async () => {
  // What the client sent to the MCP endpoint and what came back, header by header.
  const exchanges = [];
  const fetch = async (input, init = {}) => {
    const response = await globalThis.fetch(input, init);
    const url = String(input instanceof Request ? input.url : input);
    if (url === publicUrl && typeof init.body === 'string') {
      const headers = new Headers(init.headers);
      exchanges.push({
        body: JSON.parse(init.body),
        version: headers.get('mcp-protocol-version'),
        sessionSent: headers.get('mcp-session-id'),
        status: response.status,
        sessionReceived: response.headers.get('mcp-session-id'),
      });
    }
    return response;
  };
  const provider = new ClientCredentialsProvider({
    clientId: M2M.clientId,
    clientSecret: M2M.clientSecret,
    expectedIssuer: as.issuer,
    scope: 'mcp:connect mcp:tools:read mcp:tools:execute read:fact',
  });
  const transport = new StreamableHTTPClientTransport(new URL(publicUrl), { authProvider: provider, fetch });
  const client = new Client(
    { name: 'mcpgate-e2e-graphql-modern', version: '0.0.0' },
    { versionNegotiation: { mode: { pin: MODERN } } },
  );
  try {
    await client.connect(transport);
    assert.equal(client.getServerVersion()?.name, 'mcpgate-graphql');

    const tools = (await client.listTools()).tools;
    assert.deepEqual(tools.map((t) => t.name).sort(), ['execute_operation_get_facts', 'get_operation_info']);
    const facts = await client.callTool({ name: 'execute_operation_get_facts', arguments: { limit: 1 } });
    assert.notEqual(facts.isError, true, JSON.stringify(facts));
    assert.equal(facts.structuredContent.facts.length, 1);

    const methods = exchanges.map((e) => e.body.method);
    assert.ok(!methods.includes('initialize'), methods.join(', '));
    for (const method of ['server/discover', 'tools/list', 'tools/call']) {
      assert.ok(
        exchanges.some((e) => e.body.method === method && e.status === 200),
        `${method} not answered: ${methods.join(', ')}`,
      );
    }
    // 401 and 403 are the OAuth discovery and step-up; everything else is answered.
    for (const e of exchanges) {
      assert.ok([200, 401, 403].includes(e.status), JSON.stringify(e));
      assert.equal(e.version, MODERN, JSON.stringify(e));
      assert.equal(e.body.params?._meta?.['io.modelcontextprotocol/protocolVersion'], MODERN, JSON.stringify(e));
      assert.equal(e.sessionSent, null);
      assert.equal(e.sessionReceived, null);
    }
  } finally {
    await client.close().catch(() => {});
  }
});

test('raw 2026-07-28 requests: resultType, serverInfo and the caching hints; a mismatched version is refused', async () => {
  const { access_token: token } = await requestToken(as, {
    scope: 'mcp:connect mcp:tools:read mcp:tools:execute read:fact',
    resource: publicUrl,
  });
  const meta = (version = MODERN) => ({
    'io.modelcontextprotocol/protocolVersion': version,
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '0.0.0' },
  });
  const send = (method, params, headers = {}) =>
    postMcp(publicUrl, { jsonrpc: '2.0', id: 1, method, params }, {
      token,
      headers: { 'mcp-protocol-version': MODERN, 'mcp-method': method, ...headers },
    });
  const serverInfo = { name: 'mcpgate-graphql' };

  const discover = await send('server/discover', { _meta: meta() });
  assert.equal(discover.status, 200);
  const discovered = (await discover.json()).result;
  assert.equal(discovered.resultType, 'complete');
  assert.deepEqual(discovered.supportedVersions, [MODERN, '2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05']);
  assert.equal(discovered._meta['io.modelcontextprotocol/serverInfo'].name, serverInfo.name);

  const list = await send('tools/list', { _meta: meta() });
  assert.equal(list.status, 200);
  assert.equal(list.headers.get('mcp-session-id'), null);
  const listed = (await list.json()).result;
  assert.equal(listed.resultType, 'complete');
  assert.equal(listed.ttlMs, 300000);
  assert.equal(listed.cacheScope, 'private');
  assert.equal(listed._meta['io.modelcontextprotocol/serverInfo'].name, serverInfo.name);

  const before = (await api.lastRequest()).count;
  const call = await send(
    'tools/call',
    { name: 'execute_operation_get_facts', arguments: {}, _meta: meta('2025-11-25') },
    { 'mcp-name': 'execute_operation_get_facts' },
  );
  assert.equal(call.status, 400);
  assert.equal((await call.json()).error.code, -32020);
  assert.equal((await api.lastRequest()).count, before);
});
