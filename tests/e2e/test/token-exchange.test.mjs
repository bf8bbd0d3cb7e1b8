// upstream.identity.exchange against real peers: oidc-provider with RFC 8693's
// token-exchange grant registered through its extension point
// (provider.registerGrantType), server-everything behind the recording proxy.
//
// The MCP client (the SDK, with a client_credentials token of m2m for the gateway)
// talks to mcpgate; mcpgate exchanges that token at the provider, as its own client
// mcpgate-upstream, for a JWT whose audience is the upstream and whose subject is
// the caller's; the upstream sees only that token, one exchange serves the whole
// session, and a second caller gets an exchange (and a subject) of its own.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { M2M, M2M_B, TOKEN_EXCHANGE, UPSTREAM_CLIENT, decodeJwt } from '../lib/as.mjs';
import { startStack } from '../lib/stack.mjs';

/** The upstream as the provider names it: the audience mcpgate asks for. */
const UPSTREAM_RESOURCE = 'http://upstream.test/mcp';
const ECHO = { name: 'echo', arguments: { message: 'hi' } };

let stack;
before(async () => {
  stack = await startStack({
    upstreamResource: UPSTREAM_RESOURCE,
    tokenExchange: true,
    gatewayOptions: (as) => ({
      upstreamExtra: `  identity:
    exchange:
      token_url: ${as.tokenUrl}
      client_id: ${UPSTREAM_CLIENT.clientId}
      client_secret: "${UPSTREAM_CLIENT.clientSecret}"
      audience: ${UPSTREAM_RESOURCE}
`,
    }),
  });
});
after(async () => {
  await stack?.stop();
});

/** Check a JWT's RS256 signature against the provider's published JWKS. */
async function assertSignedByAs(token) {
  const [h, p, sig] = token.split('.');
  const { header } = decodeJwt(token);
  const { keys } = await (await fetch(stack.as.jwksUrl)).json();
  const jwk = keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} is not in the provider's JWKS`);
  const ok = verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(sig, 'base64url'));
  assert.ok(ok, "the exchanged token's signature does not verify with the provider's key");
}

/**
 * One SDK session of `credentials` (initialize, tools/list, an echo call); returns
 * the client's token and the upstream requests the session caused.
 */
async function session(credentials) {
  const provider = new ClientCredentialsProvider({
    clientId: credentials.clientId,
    clientSecret: credentials.clientSecret,
    expectedIssuer: stack.as.issuer,
    scope: 'mcp:connect',
  });
  const transport = new StreamableHTTPClientTransport(new URL(stack.publicUrl), { authProvider: provider });
  const client = new Client({ name: 'mcpgate-e2e-token-exchange', version: '0.0.0' });
  const upstreamBefore = stack.recorder.requests.length;
  try {
    await client.connect(transport);
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === 'echo'), `tools/list lacked echo: ${tools.map((t) => t.name).join(', ')}`);
    const result = await client.callTool(ECHO);
    assert.notEqual(result.isError, true, JSON.stringify(result));
  } finally {
    await client.close().catch(() => {});
  }
  const clientToken = provider.tokens()?.access_token;
  assert.ok(clientToken, 'the SDK client holds no token');
  return { clientToken, upstream: stack.recorder.requests.slice(upstreamBefore) };
}

describe('upstream.identity.exchange: the upstream gets an exchanged token for the caller', () => {
  test("the upstream sees the exchanged token (its audience, the caller's subject), never the client's", async () => {
    const { clientToken, upstream } = await session(M2M);

    // One exchange for the whole session, by mcpgate's client, of the caller's token.
    const exchanges = stack.as.exchanges.filter((e) => e.subjectToken === clientToken);
    assert.equal(exchanges.length, 1, `expected one exchange, got ${JSON.stringify(exchanges.map((e) => e.status))}`);
    const [exchange] = exchanges;
    assert.equal(exchange.status, 'issued');
    assert.equal(exchange.clientId, UPSTREAM_CLIENT.clientId);
    assert.equal(exchange.audience, UPSTREAM_RESOURCE);
    const exchanged = exchange.accessToken;
    assert.notEqual(exchanged, clientToken);

    // What the exchanged token says: the provider's, for the upstream, as the caller.
    await assertSignedByAs(exchanged);
    const { payload } = decodeJwt(exchanged);
    const caller = decodeJwt(clientToken).payload;
    assert.equal(payload.iss, stack.as.issuer);
    assert.equal(payload.aud, UPSTREAM_RESOURCE);
    assert.equal(payload.sub, caller.sub);
    assert.equal(caller.aud, stack.publicUrl, "the caller's token is for the gateway");

    // Every upstream request carried the exchanged token and nothing of the client's.
    const lines = upstream.map((r) => `${r.method} ${r.url} ${r.body.slice(0, 60)}`).join('\n');
    assert.ok(upstream.filter((r) => r.method === 'POST').length >= 4, `expected initialize, initialized, tools/list, tools/call:\n${lines}`);
    for (const r of upstream) {
      const where = `${r.method} ${r.url} ${r.body.slice(0, 60)}`;
      assert.equal(r.headers.authorization, `Bearer ${exchanged}`, `upstream request without the exchanged token: ${where}`);
      for (const [name, value] of Object.entries(r.headers)) {
        assert.ok(!String(value).includes(clientToken), `the client's token reached the upstream in ${name}: ${where}`);
      }
      assert.ok(!r.body.includes(clientToken), `the client's token reached the upstream in a body: ${where}`);
    }
    assert.ok(
      upstream.some((r) => r.body.includes('"method":"tools/call"') && r.responseBody.includes('hi')),
      `the echo call did not reach the upstream:\n${lines}`,
    );
  });

  test('a second caller gets an exchange and a subject of its own', async () => {
    const first = await session(M2M);
    const second = await session(M2M_B);
    const exchangedFor = (token) => stack.as.exchanges.find((e) => e.subjectToken === token && e.status === 'issued')?.accessToken;
    const a = exchangedFor(first.clientToken);
    const b = exchangedFor(second.clientToken);
    assert.ok(a && b, 'each caller was exchanged');
    assert.notEqual(a, b);
    assert.equal(decodeJwt(b).payload.sub, decodeJwt(second.clientToken).payload.sub);
    assert.notEqual(decodeJwt(a).payload.sub, decodeJwt(b).payload.sub);
    for (const r of second.upstream) {
      assert.equal(r.headers.authorization, `Bearer ${b}`, `${r.method} ${r.body.slice(0, 60)}`);
    }
  });
});

test('the grant is registered at the provider, and refuses a token it did not issue for the gateway', async () => {
  // The extension point answers by itself: a forged subject token gets invalid_grant.
  const res = await fetch(stack.as.tokenUrl, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(UPSTREAM_CLIENT.clientId)}:${encodeURIComponent(UPSTREAM_CLIENT.clientSecret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({
      grant_type: TOKEN_EXCHANGE,
      subject_token: 'e30.e30.AAAA',
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: UPSTREAM_RESOURCE,
    }),
  });
  const body = await res.json();
  assert.equal(res.status, 400, JSON.stringify(body));
  assert.equal(body.error, 'invalid_grant');
});
