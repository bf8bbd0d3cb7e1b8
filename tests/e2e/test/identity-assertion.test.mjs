// upstream.identity.assertion against real peers: the official TypeScript SDK
// client calls tools through mcpgate with a token from oidc-provider, and sends
// its own forged copies of the identity headers; server-everything, behind the
// recorder, gets every request with an ES256 assertion that `jose` (a JWT library
// the upstream could use) verifies against the JWKS mcpgate publishes, naming the
// caller, its client, its scopes, the upstream session and the request. The forged
// headers and the client's token never reach the upstream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { M2M, requestToken } from '../lib/as.mjs';
import { startStack } from '../lib/stack.mjs';

const ASSERTION = 'x-mcpgate-identity';

let stack;
before(async () => {
  stack = await startStack({
    gatewayOptions: () => ({
      upstreamExtra: `  identity:
    assertion:
      ttl: 45s
    headers:
      enabled: true
`,
    }),
  });
});
after(async () => {
  await stack?.stop();
});

test('the upstream verifies who calls with jose against the JWKS, and never sees forged headers', async () => {
  const { access_token: token } = await requestToken(stack.as, {
    scope: 'mcp:connect mcp:tools',
    resource: stack.publicUrl,
  });
  const forged = {
    [ASSERTION]: 'forged.assertion.value',
    'x-mcpgate-subject': 'mallory',
    'x-mcpgate-client-id': 'mallory-app',
    'x-mcpgate-scopes': 'mcp:admin',
  };
  const client = new Client({ name: 'identity-e2e', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(stack.publicUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}`, ...forged } },
  });
  await client.connect(transport);
  const result = await client.callTool({ name: 'echo', arguments: { message: 'who am I' } });
  assert.match(JSON.stringify(result.content), /who am I/);
  await client.close();

  const posts = stack.recorder.requests.filter((r) => r.method === 'POST');
  assert.ok(posts.length >= 3, `initialize, initialized and tools/call reached the upstream: ${posts.length}`);
  const origin = new URL(stack.publicUrl).origin;
  const jwks = createRemoteJWKSet(new URL(`${origin}/.well-known/mcpgate-identity-jwks.json`));
  const jtis = new Set();
  for (const record of posts) {
    const where = `${record.method} ${record.body.slice(0, 60)}`;
    const value = record.headers[ASSERTION];
    assert.ok(value && value !== forged[ASSERTION], `an assertion of mcpgate's own on ${where}`);
    assert.equal(decodeProtectedHeader(value).typ, 'mcpgate-identity+jwt');
    const { payload } = await jwtVerify(value, jwks, {
      algorithms: ['ES256'],
      issuer: stack.publicUrl,
      audience: stack.recorder.url,
      typ: 'mcpgate-identity+jwt',
      requiredClaims: ['sub', 'jti', 'iat', 'exp', 'request_id'],
    });
    assert.equal(payload.client_id, M2M.clientId, where);
    assert.equal(payload.sub, M2M.clientId, `oidc-provider names a client_credentials caller by its client: ${where}`);
    assert.equal(payload.scope, 'mcp:connect mcp:tools', where);
    assert.equal(payload.exp - payload.iat, 45, where);
    assert.ok(!jtis.has(payload.jti), `a new jti on every request: ${where}`);
    jtis.add(payload.jti);
    // Plain headers (turned on) carry mcpgate's view, never the client's.
    assert.equal(record.headers['x-mcpgate-subject'], M2M.clientId, where);
    assert.equal(record.headers['x-mcpgate-client-id'], M2M.clientId, where);
    assert.equal(record.headers['x-mcpgate-scopes'], 'mcp:connect mcp:tools', where);
    assert.equal(record.headers.authorization, undefined, where);
    for (const [name, headerValue] of Object.entries(record.headers)) {
      assert.ok(!String(headerValue).includes(token), `the client's token in ${name} on ${where}`);
    }
    const upstreamSession = record.headers['mcp-session-id'];
    if (upstreamSession) assert.equal(payload.session_id, upstreamSession, where);
  }
  assert.ok(
    posts.some((r) => r.headers['mcp-session-id']),
    'requests after initialize name the upstream session (and the assertion the same one)',
  );
});
