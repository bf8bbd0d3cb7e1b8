// Raw HTTP checks of mcpgate's wire contract (DESIGN §2): challenges,
// status codes and the RFC 9728 metadata documents, byte for byte.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createSign } from 'node:crypto';
import http from 'node:http';
import { requestToken } from '../lib/as.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { INITIALIZE_BODY, expectedNoTokenChallenge, postMcp } from '../lib/mcp.mjs';
import { freePort } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

/** An RS256 JWT with the right iss/aud/scope but signed by a key the AS never published. */
function forgedToken({ issuer, audience }) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'RS256', typ: 'at+jwt', kid: 'not-a-published-kid' })}.${b64({
    iss: issuer,
    aud: audience,
    sub: 'mallory',
    client_id: 'm2m',
    scope: 'mcp:connect mcp:tools mcp:admin',
    iat: now,
    exp: now + 300,
  })}`;
  const sig = createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url');
  return `${input}.${sig}`;
}

/**
 * POST with two Authorization headers. fetch() would merge them into one,
 * so this goes through node:http with raw header pairs.
 */
function postWithTwoAuthorizations(url, token) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        // Raw header pairs: node:http adds no Host of its own, and mcpgate
        // refuses an HTTP/1.1 request without one.
        headers: [
          ['host', u.host],
          ['content-type', 'application/json'],
          ['accept', 'application/json, text/event-stream'],
          ['authorization', `Bearer ${token}`],
          ['authorization', `Bearer ${token}`],
        ],
      },
      (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, challenge: res.headers['www-authenticate'], body }));
      },
    );
    req.once('error', reject);
    req.end(JSON.stringify(INITIALIZE_BODY));
  });
}

describe('mcpgate wire contract', () => {
  let stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  /**
   * Runs `exchange` (which reads the whole answer) and asserts that nothing
   * reached the upstream meanwhile: each refusal checks its own requests, so the
   * check holds whichever tests run, and in whatever order.
   */
  async function refusedBeforeTheUpstream(exchange) {
    const before = stack.recorder.requests.length;
    const result = await exchange();
    assert.deepEqual(
      stack.recorder.requests.slice(before).map((r) => `${r.method} ${r.url}`),
      [],
      'a refused request reached the upstream',
    );
    return result;
  }

  for (const method of ['POST', 'GET', 'DELETE']) {
    test(`${method} without a token -> 401 with the exact challenge and an empty body`, async () => {
      await refusedBeforeTheUpstream(async () => {
        const res =
          method === 'POST'
            ? await postMcp(stack.gateway.publicUrl, INITIALIZE_BODY)
            : await fetch(stack.gateway.publicUrl, { method, headers: { accept: 'text/event-stream' } });
        assert.equal(res.status, 401);
        assert.equal(res.headers.get('www-authenticate'), expectedNoTokenChallenge(stack.gateway));
        assert.equal(await res.text(), '');
      });
    });
  }

  test('garbage bearer token -> 401 invalid_token', async () => {
    await refusedBeforeTheUpstream(async () => {
      const res = await postMcp(stack.gateway.publicUrl, INITIALIZE_BODY, { token: 'not-a-jwt' });
      assert.equal(res.status, 401);
      const challenge = res.headers.get('www-authenticate') ?? '';
      assert.match(challenge, /^Bearer realm="mcp", /);
      assert.match(challenge, /error="invalid_token"/);
      assert.ok(challenge.includes(`resource_metadata="${stack.gateway.metadataUrl}"`), challenge);
      assert.equal(await res.text(), '');
    });
  });

  test('JWT signed by an unknown key -> 401 invalid_token', async () => {
    const token = forgedToken({ issuer: stack.as.issuer, audience: stack.publicUrl });
    await refusedBeforeTheUpstream(async () => {
      const res = await postMcp(stack.gateway.publicUrl, INITIALIZE_BODY, { token });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      assert.equal(await res.text(), '');
    });
  });

  test('real AS token without mcp:connect -> 403 insufficient_scope', async () => {
    const { access_token: token, scope } = await requestToken(stack.as, {
      scope: 'mcp:tools',
      resource: stack.publicUrl,
    });
    assert.equal(scope, 'mcp:tools', 'the AS should grant exactly what was asked');
    await refusedBeforeTheUpstream(async () => {
      const res = await postMcp(stack.gateway.publicUrl, INITIALIZE_BODY, { token });
      assert.equal(res.status, 403);
      assert.equal(
        res.headers.get('www-authenticate'),
        `Bearer error="insufficient_scope", scope="mcp:connect", resource_metadata="${stack.gateway.metadataUrl}", ` +
          `error_description="missing required scopes: mcp:connect"`,
      );
      assert.equal(await res.text(), '');
    });
  });

  // Malformed credentials are a 400 invalid_request even when the token itself is valid.
  test('a valid token in the query string -> 400 invalid_request', async () => {
    const { access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl });
    await refusedBeforeTheUpstream(async () => {
      const res = await postMcp(`${stack.gateway.publicUrl}?access_token=${encodeURIComponent(token)}`, INITIALIZE_BODY);
      assert.equal(res.status, 400);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer .*error="invalid_request"/);
      assert.equal(await res.text(), '');
    });
  });

  test('two Authorization headers with a valid token -> 400 invalid_request', async () => {
    const { access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl });
    await refusedBeforeTheUpstream(async () => {
      const res = await postWithTwoAuthorizations(stack.gateway.publicUrl, token);
      assert.equal(res.status, 400);
      assert.match(res.challenge ?? '', /^Bearer .*error="invalid_request"/);
      assert.equal(res.body, '');
    });
  });

  test('real AS token with mcp:connect -> initialize is proxied (positive control)', async () => {
    const { access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl });
    const before = stack.recorder.requests.length;
    const res = await postMcp(stack.gateway.publicUrl, INITIALIZE_BODY, { token });
    assert.equal(res.status, 200, await res.clone().text());
    const text = await res.text();
    // server-everything answers over SSE or JSON; either way the result names it.
    assert.match(text, /"serverInfo"/);
    const seen = stack.recorder.requests.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(JSON.parse(seen[0].body).method, 'initialize');
    assert.equal(seen[0].headers.authorization, undefined);
  });

  for (const suffix of ['/mcp', '']) {
    test(`protected-resource metadata at /.well-known/oauth-protected-resource${suffix}`, async () => {
      const res = await fetch(`${stack.gateway.origin}/.well-known/oauth-protected-resource${suffix}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(await res.json(), {
        resource: stack.publicUrl,
        authorization_servers: [stack.as.issuer],
        bearer_methods_supported: ['header'],
        scopes_supported: ['mcp:connect'],
      });
    });
  }

  // A gateway of its own, whose upstream port has nothing listening: the
  // stack's upstream stays up for the other tests, whatever their order.
  test('upstream unreachable -> 502 with a JSON-RPC error for the request id', async () => {
    const dead = await startGateway({
      gwPort: await freePort(),
      upstreamUrl: `http://127.0.0.1:${await freePort()}/mcp`,
      issuer: stack.as.issuer,
      // The AS issues tokens for the stack's gateway only.
      oauthExtra: `    audiences: [${stack.publicUrl}]\n`,
    });
    try {
      const { access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl });
      const res = await postMcp(dead.publicUrl, { ...INITIALIZE_BODY, id: 'gone-1' }, { token });
      assert.equal(res.status, 502);
      const body = await res.json();
      assert.equal(body.jsonrpc, '2.0');
      assert.equal(body.id, 'gone-1');
      assert.equal(typeof body.error?.code, 'number');
    } finally {
      await dead.stop();
    }
  });
});
