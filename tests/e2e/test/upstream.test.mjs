// What the upstream sees and who may use a session, against real peers:
//
// - upstream.oauth: mcpgate gets its own token from oidc-provider with the
//   client_credentials grant (its own client, mcpgate-upstream, for the
//   upstream's own resource) at start, and every upstream request carries
//   `Authorization: Bearer <that token>`: signed by the AS, for the upstream's
//   audience, never the client's token, one grant for the whole run (cached).
//   client_secret_basic and client_secret_post are each used as configured (with a
//   secret that needs form-encoding); a wrong secret stops `mcpgate serve` and
//   `mcpgate check` with exit 78 naming upstream.oauth.token_url and
//   invalid_client, without printing the secret.
// - Sessions bound to their owner: clients get mcpgate's own 32-hex session id,
//   never the upstream's; another principal (a second M2M client) naming that
//   session gets the transport's 404 "Session not found" on POST, GET, GET with
//   Last-Event-ID and DELETE, and none of it reaches the upstream; the owner
//   with a renewed token (other scopes) carries on, and its DELETE ends the
//   session.
//
// One stack (AS + server-everything + recorder + gateway with upstream.oauth);
// the AS knows a second resource, UPSTREAM_RESOURCE, which only mcpgate's
// own client (UPSTREAM_CLIENT) may get tokens for.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import {
  M2M,
  M2M_B,
  UPSTREAM_CLIENT,
  UPSTREAM_SCOPE,
  decodeJwt,
  requestToken,
} from '../lib/as.mjs';
import {
  MCPGATE_BIN,
  UPSTREAM_CREDENTIAL,
  gatewayConfigYaml,
  gatewayEnv,
  startGateway,
  writeConfig,
} from '../lib/gateway.mjs';
import { openSession } from '../lib/mcp.mjs';
import { freePort, runProcess } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

/** The upstream's RFC 8707 resource: what mcpgate asks its token for. */
const UPSTREAM_RESOURCE = 'http://upstream.test/mcp';

const NOT_FOUND_BODY = { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } };
const ECHO = { name: 'echo', arguments: { message: 'hi' } };

/** The `upstream:` lines for mcpgate's own OAuth client. */
function upstreamOAuthYaml(as, { secret = UPSTREAM_CLIENT.clientSecret, authMethod = 'client_secret_basic' } = {}) {
  return `  oauth:
    token_url: ${as.tokenUrl}
    client_id: ${UPSTREAM_CLIENT.clientId}
    client_secret: "${secret}"
    auth_method: ${authMethod}
    scopes: [${UPSTREAM_SCOPE}]
    resource: ${UPSTREAM_RESOURCE}
`;
}

let stack;
/** The grants the stack's gateway made while it started (other tests start gateways of their own). */
let startupGrants;
before(async () => {
  stack = await startStack({
    upstreamResource: UPSTREAM_RESOURCE,
    gatewayOptions: (as) => ({ upstreamExtra: upstreamOAuthYaml(as) }),
  });
  startupGrants = stack.as.issued.filter((t) => t.clientId === UPSTREAM_CLIENT.clientId);
});
after(async () => {
  await stack?.stop();
});

/** Tokens the AS issued to `clientId`, in order. */
const issuedTo = (clientId) => stack.as.issued.filter((t) => t.clientId === clientId);

/** Check a JWT's RS256 signature against the AS's published JWKS (kid from the header). */
async function assertSignedByAs(token) {
  const [h, p, sig] = token.split('.');
  const { header } = decodeJwt(token);
  const { keys } = await (await fetch(stack.as.jwksUrl)).json();
  const jwk = keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} is not in the AS's JWKS`);
  const ok = verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(sig, 'base64url'));
  assert.ok(ok, "the upstream token's signature does not verify with the AS's key");
}

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/** The upstream's own session id, from the answer to the newest initialize the recorder saw. */
function newestUpstreamSession() {
  const init = stack.recorder.requests.findLast((r) => r.method === 'POST' && r.body.includes('"method":"initialize"'));
  const id = init?.responseHeaders?.['mcp-session-id'];
  assert.ok(id, 'the upstream answered initialize without a session id');
  return id;
}

describe('upstream.oauth: mcpgate sends its own client_credentials token upstream', () => {
  test('SDK v1 client: tools/list + echo; every upstream request carries the one token mcpgate got, never the client\'s', async () => {
    const provider = new ClientCredentialsProvider({
      clientId: M2M.clientId,
      clientSecret: M2M.clientSecret,
      expectedIssuer: stack.as.issuer,
      scope: 'mcp:connect',
    });
    const transport = new StreamableHTTPClientTransport(new URL(stack.publicUrl), { authProvider: provider });
    const client = new Client({ name: 'mcpgate-e2e-upstream', version: '0.0.0' });
    const upstreamBefore = stack.recorder.requests.length;
    const issuedBefore = stack.as.issued.length;
    try {
      await client.connect(transport);
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo'), `tools/list lacked echo: ${tools.map((t) => t.name).join(', ')}`);
      const result = await client.callTool(ECHO);
      assert.notEqual(result.isError, true, JSON.stringify(result));
      assert.match(textOf(result), /\bhi\b/);

      // The session id the client holds is mcpgate's, not the upstream's.
      assert.match(transport.sessionId ?? '', /^[0-9a-f]{32}$/);
      assert.notEqual(transport.sessionId, newestUpstreamSession());
    } finally {
      await client.close().catch(() => {});
    }

    const clientToken = provider.tokens()?.access_token;
    assert.ok(clientToken, 'the SDK client holds no token');

    // The AS issued mcpgate exactly one token, at start (before the client's),
    // for the upstream's resource and scope, and none since: it is cached.
    assert.equal(startupGrants.length, 1, `mcpgate should have made one grant at start, made ${startupGrants.length}`);
    const since = stack.as.issued.slice(issuedBefore).filter((t) => t.clientId === UPSTREAM_CLIENT.clientId);
    assert.deepEqual(since, [], 'mcpgate asked for another upstream token while it had one');
    const [grant] = startupGrants;
    assert.equal(grant.grantType, 'client_credentials');
    assert.equal(grant.clientAuth, 'client_secret_basic');
    assert.equal(grant.requestedScope, UPSTREAM_SCOPE);
    assert.equal(grant.requestedResource, UPSTREAM_RESOURCE);
    const clientGrant = issuedTo(M2M.clientId).find((t) => t.accessToken === clientToken);
    assert.ok(clientGrant, "the client's token was not issued by this AS");
    assert.ok(grant.at < clientGrant.at, "mcpgate's token should have been fetched at start, before any client came");

    const upstreamToken = grant.accessToken;
    assert.notEqual(upstreamToken, clientToken);

    // What the two tokens say: mcpgate's is the AS's, for mcpgate-upstream and the
    // upstream's audience; the client's is m2m's, for the gateway.
    await assertSignedByAs(upstreamToken);
    const { header, payload } = decodeJwt(upstreamToken);
    assert.equal(header.typ, 'at+jwt');
    assert.equal(payload.iss, stack.as.issuer);
    assert.equal(payload.client_id, UPSTREAM_CLIENT.clientId);
    assert.equal(payload.sub, UPSTREAM_CLIENT.clientId);
    assert.equal(payload.aud, UPSTREAM_RESOURCE);
    assert.equal(payload.scope, UPSTREAM_SCOPE);
    const clientClaims = decodeJwt(clientToken).payload;
    assert.equal(clientClaims.client_id, M2M.clientId);
    assert.equal(clientClaims.aud, stack.publicUrl);
    assert.notEqual(clientClaims.client_id, payload.client_id);

    // Every upstream request: mcpgate's token (the same one: cached), the
    // configured static header beside it, and no trace of the client's token.
    const reqs = stack.recorder.requests.slice(upstreamBefore);
    const lines = reqs.map((r) => `${r.method} ${r.url} ${r.body.slice(0, 60)}`).join('\n');
    assert.ok(reqs.filter((r) => r.method === 'POST').length >= 4, `expected initialize, initialized, tools/list, tools/call:\n${lines}`);
    for (const r of reqs) {
      const where = `${r.method} ${r.url} ${r.body.slice(0, 60)}`;
      assert.equal(r.headers.authorization, `Bearer ${upstreamToken}`, `upstream request without mcpgate's token: ${where}`);
      assert.equal(r.headers[UPSTREAM_CREDENTIAL.name.toLowerCase()], UPSTREAM_CREDENTIAL.value, where);
      for (const [name, value] of Object.entries(r.headers)) {
        assert.ok(!String(value).includes(clientToken), `the client's token reached the upstream in ${name}: ${where}`);
      }
    }
    assert.ok(
      reqs.some((r) => r.body.includes('"method":"tools/call"') && r.responseBody.includes('hi')),
      `the echo call did not reach the upstream:\n${lines}`,
    );
  });

  test('auth_method client_secret_post: a second gateway gets its token at start with the secret in the form', async () => {
    const before = stack.as.issued.length;
    const gateway = await startGateway({
      gwPort: await freePort(),
      upstreamUrl: stack.recorder.url,
      issuer: stack.as.issuer,
      upstreamExtra: upstreamOAuthYaml(stack.as, { authMethod: 'client_secret_post' }),
    });
    try {
      const grants = stack.as.issued.slice(before);
      assert.equal(grants.length, 1, 'the gateway should have started with exactly one grant');
      assert.equal(grants[0].clientId, UPSTREAM_CLIENT.clientId);
      assert.equal(grants[0].clientAuth, 'client_secret_post');
      assert.equal(grants[0].requestedResource, UPSTREAM_RESOURCE);
      assert.equal(decodeJwt(grants[0].accessToken).payload.aud, UPSTREAM_RESOURCE);
    } finally {
      await gateway.stop();
    }
  });

  for (const [name, options, command] of [
    ['serve with a wrong client_secret (Basic)', { secret: 'not-the-secret' }, 'serve'],
    ['serve with a wrong client_secret (post)', { secret: 'not-the-secret', authMethod: 'client_secret_post' }, 'serve'],
    ['check with a wrong client_secret', { secret: 'not-the-secret' }, 'check'],
  ]) {
    test(`${name}: exit 78 naming upstream.oauth.token_url and invalid_client, secret not printed`, async () => {
      const yaml = gatewayConfigYaml({
        gwPort: await freePort(),
        upstreamUrl: stack.recorder.url,
        issuer: stack.as.issuer,
        upstreamExtra: upstreamOAuthYaml(stack.as, options),
      });
      const { dir, configPath } = await writeConfig(yaml);
      const tokenHits = () => stack.as.hits.filter((h) => h.method === 'POST' && h.path === '/token').length;
      const hitsBefore = tokenHits();
      try {
        const r = await runProcess(MCPGATE_BIN, [command, '--config', configPath], { timeoutMs: 30_000, baseEnv: gatewayEnv() });
        const out = `${r.stdout}\n${r.stderr}`;
        assert.equal(r.code, 78, `expected EX_CONFIG, got ${r.code} (${r.signal ?? 'no signal'}):\n${out}`);
        assert.match(r.stderr, /upstream\.oauth\.token_url/, out);
        assert.match(r.stderr, /invalid_client/, out);
        assert.ok(r.stderr.includes(stack.as.tokenUrl), `stderr should name the token endpoint:\n${out}`);
        assert.ok(!out.includes(options.secret), `the client secret was printed:\n${out}`);
        assert.ok(tokenHits() > hitsBefore, 'mcpgate never asked the AS for a token');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('sessions are bound to the principal that opened them', () => {
  /** One raw request to the MCP endpoint; returns { status, contentType, text }. */
  async function raw(method, { token, sessionId, headers = {}, body, signal }) {
    const res = await fetch(stack.publicUrl, {
      method,
      signal,
      headers: {
        authorization: `Bearer ${token}`,
        ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
        ...(body ? { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } : {}),
        ...headers,
      },
      body: body && JSON.stringify(body),
    });
    return { res, status: res.status, contentType: res.headers.get('content-type') };
  }

  async function assertSessionNotFound(what, exchange) {
    const { res, status, contentType } = await exchange;
    const text = await res.text();
    assert.equal(status, 404, `${what}: ${status} ${text.slice(0, 300)}`);
    assert.match(contentType ?? '', /^application\/json\b/, what);
    assert.deepEqual(JSON.parse(text), NOT_FOUND_BODY, what);
  }

  /** Upstream requests in upstream session `id`. */
  const inUpstreamSession = (id) => stack.recorder.requests.filter((r) => r.headers['mcp-session-id'] === id);

  test("another principal gets 404 on POST, GET, GET with Last-Event-ID and DELETE; the owner with a renewed token carries on; the owner's DELETE ends it", async () => {
    const tokenA = (await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl })).access_token;
    const tokenB = (
      await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl, clientId: M2M_B.clientId, clientSecret: M2M_B.clientSecret })
    ).access_token;
    const a = decodeJwt(tokenA).payload;
    const b = decodeJwt(tokenB).payload;
    assert.equal(a.iss, b.iss, 'the two principals should differ in subject and client only');
    assert.notEqual(a.sub, b.sub);
    assert.notEqual(a.client_id, b.client_id);

    // A opens a session: mcpgate's id, not the upstream's, which the upstream alone sees.
    const sessionA = await openSession(stack.publicUrl, { token: tokenA });
    const upstreamA = newestUpstreamSession();
    assert.match(sessionA.sessionId, /^[0-9a-f]{32}$/);
    assert.notEqual(sessionA.sessionId, upstreamA, "the upstream's session id reached the client");
    assert.ok(
      stack.recorder.requests.every((r) => r.headers['mcp-session-id'] !== sessionA.sessionId),
      "mcpgate's session id reached the upstream",
    );
    const first = await sessionA.request('tools/call', ECHO);
    assert.equal(first.status, 200, first.text.slice(0, 300));
    assert.match(textOf(first.message.result), /\bhi\b/);

    // B's token is good: B gets a session of its own.
    const sessionB = await openSession(stack.publicUrl, { token: tokenB });
    assert.notEqual(sessionB.sessionId, sessionA.sessionId);
    const own = await sessionB.request('tools/call', ECHO);
    assert.equal(own.status, 200, own.text.slice(0, 300));
    await sessionB.close();

    // B names A's session: the same 404 as for a session that does not exist.
    const upstreamBefore = stack.recorder.requests.length;
    const upstreamInA = inUpstreamSession(upstreamA).length;
    const asB = { token: tokenB, sessionId: sessionA.sessionId, headers: { 'mcp-protocol-version': sessionA.protocolVersion } };
    await assertSessionNotFound(
      'B: POST tools/call',
      raw('POST', { ...asB, body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: ECHO } }),
    );
    await assertSessionNotFound('B: GET stream', raw('GET', { ...asB, headers: { ...asB.headers, accept: 'text/event-stream' } }));
    await assertSessionNotFound(
      'B: GET resuming with Last-Event-ID',
      raw('GET', { ...asB, headers: { ...asB.headers, accept: 'text/event-stream', 'last-event-id': 'any-event-1' } }),
    );
    await assertSessionNotFound('B: DELETE', raw('DELETE', asB));
    assert.equal(stack.recorder.requests.length, upstreamBefore, "B's requests reached the upstream");
    assert.equal(inUpstreamSession(upstreamA).length, upstreamInA);

    // The same GET from A opens the stream: B's 404 was the session's owner check.
    const abort = new AbortController();
    const stream = await raw('GET', {
      token: tokenA,
      sessionId: sessionA.sessionId,
      headers: { 'mcp-protocol-version': sessionA.protocolVersion, accept: 'text/event-stream' },
      signal: abort.signal,
    });
    assert.equal(stream.status, 200, "A's GET stream");
    assert.match(stream.contentType ?? '', /^text\/event-stream\b/);
    abort.abort();

    // A renews its token (other scopes, new jti): still A, so the session goes on,
    // in the same upstream session; B's DELETE did not end it.
    const renewed = await requestToken(stack.as, { scope: 'mcp:connect mcp:tools', resource: stack.publicUrl });
    assert.notEqual(renewed.access_token, tokenA);
    assert.equal(decodeJwt(renewed.access_token).payload.sub, a.sub);
    const again = await sessionA.request('tools/call', { name: 'echo', arguments: { message: 'renewed' } }, { token: renewed.access_token });
    assert.equal(again.status, 200, again.text.slice(0, 300));
    assert.match(textOf(again.message.result), /\brenewed\b/);
    assert.ok(
      inUpstreamSession(upstreamA).some((r) => r.body.includes('"renewed"')),
      "the renewed call did not reach A's upstream session",
    );

    // A's DELETE ends the session, upstream too; afterwards it is not found, even for A.
    const del = await raw('DELETE', { token: renewed.access_token, sessionId: sessionA.sessionId, headers: sessionA.headers });
    await del.res.arrayBuffer();
    assert.ok(del.status >= 200 && del.status < 300, `A's DELETE: ${del.status}`);
    assert.ok(
      inUpstreamSession(upstreamA).some((r) => r.method === 'DELETE'),
      "A's DELETE did not reach the upstream session",
    );
    const afterDelete = stack.recorder.requests.length;
    await assertSessionNotFound(
      'A: POST after DELETE',
      raw('POST', {
        token: renewed.access_token,
        sessionId: sessionA.sessionId,
        headers: sessionA.headers,
        body: { jsonrpc: '2.0', id: 8, method: 'tools/call', params: ECHO },
      }),
    );
    assert.equal(stack.recorder.requests.length, afterDelete, 'a request in the ended session reached the upstream');
  });
});
