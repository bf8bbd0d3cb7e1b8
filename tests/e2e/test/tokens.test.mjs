// Token sources under change and failure: JWKS key rotation, JWKS outages,
// unknown-kid floods, and opaque tokens checked by RFC 7662 introspection
// (with RFC 7009 revocation) against the real oidc-provider.
//
// One stack (AS, server-everything, recorder, gateway) serves most tests; the
// gateway validates JWTs and sends opaque tokens to the AS's introspection
// endpoint. Two short-lived extra gateways cover max_stale and a dead
// introspection endpoint. Each gateway tags its JWKS URL with a query string
// so the AS's hit log tells their fetches apart.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSign, generateKeyPairSync, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { INTROSPECTOR, M2M_OPAQUE, decodeJwt, introspectToken, requestToken, revokeToken } from '../lib/as.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { INITIALIZE_BODY, postMcp } from '../lib/mcp.mjs';
import { freePort } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

const MIN_REFETCH_MS = 2000;
const INTROSPECTION_CACHE_TTL_MS = 2000;
const INTROSPECTION_TIMEOUT_MS = 1000;
// Clock and scheduling slack for timing assertions on loopback (generous: CI
// machines are shared, and these bounds check behaviour, not speed).
const SLACK_MS = 400;

function introspectionYaml({ url, authMethod = 'client_secret_basic' }) {
  return `    introspection:
      url: ${url}
      client_id: ${INTROSPECTOR.clientId}
      client_secret: ${INTROSPECTOR.clientSecret}
      auth_method: ${authMethod}
      cache_ttl: ${INTROSPECTION_CACHE_TTL_MS / 1000}s
      negative_cache_ttl: 1s
      timeout: ${INTROSPECTION_TIMEOUT_MS / 1000}s
      require_audience: true
    validation: jwt
`;
}

/** RS256 JWTs with valid iss/aud/exp, signed by a throwaway key, each with its own random kid. */
function forgeTokens(count, { issuer, audience }) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const tokens = [];
  for (let i = 0; i < count; i++) {
    const input = `${b64({ alg: 'RS256', typ: 'at+jwt', kid: `random-${randomUUID()}` })}.${b64({
      iss: issuer,
      aud: audience,
      sub: `mallory-${i}`,
      client_id: 'm2m',
      scope: 'mcp:connect',
      iat: now,
      exp: now + 300,
      jti: randomUUID(),
    })}`;
    tokens.push(`${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`);
  }
  return tokens;
}

/** initialize through the gateway; returns { status, challenge, body } with the body read. */
async function call(url, token) {
  const res = await postMcp(url, INITIALIZE_BODY, { token });
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    contentType: res.headers.get('content-type'),
    body: await res.text(),
  };
}

function assertOk(r, what) {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.challenge ?? ''} ${r.body.slice(0, 300)}`);
  assert.match(r.body, /"serverInfo"/, what);
}

function assertInvalidToken(r, description, what) {
  assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.slice(0, 300)}`);
  assert.match(r.challenge ?? '', /error="invalid_token"/, what);
  if (description) assert.ok(r.challenge.includes(`error_description="${description}"`), `${what}: ${r.challenge}`);
}

function assertUnavailable(r, what) {
  assert.equal(r.status, 503, `${what}: ${r.status} ${r.challenge ?? ''} ${r.body.slice(0, 300)}`);
  assert.equal(r.challenge, null, `${what}: a 503 must not carry a challenge`);
  assert.match(r.contentType ?? '', /^application\/json/, what);
  assert.equal(JSON.parse(r.body).error, 'temporarily_unavailable', what);
}

/** Poll `fn` (returning a result) until `done(result)`; returns { result, elapsed }. */
async function pollUntil(fn, done, { timeoutMs, intervalMs = 100 }) {
  const start = Date.now();
  for (;;) {
    const result = await fn();
    if (done(result)) return { result, elapsed: Date.now() - start };
    if (Date.now() - start > timeoutMs) return { result, elapsed: Date.now() - start, timedOut: true };
    await sleep(intervalMs);
  }
}

describe('mcpgate token sources: JWKS rotation/outage/flood, opaque tokens by introspection', () => {
  let stack;
  let gw; // the stack's gateway
  let as;
  const mainJwks = () => as.hits.filter((h) => h.url === '/jwks');
  const introspections = () => as.hits.filter((h) => h.path === '/token/introspection');
  const jwtFor = async (scope = 'mcp:connect') => (await requestToken(as, { scope, resource: stack.publicUrl })).access_token;
  const opaqueFor = async () =>
    (await requestToken(as, { scope: 'mcp:connect', resource: stack.publicUrl, ...M2M_OPAQUE })).access_token;
  /** Sleep until min_refetch_interval has passed since the main gateway's last JWKS fetch. */
  const waitRefetchWindow = async () => {
    const last = mainJwks().at(-1).at;
    const wait = last + MIN_REFETCH_MS + SLACK_MS - Date.now();
    if (wait > 0) await sleep(wait);
  };

  before(async () => {
    stack = await startStack({
      gatewayOptions: (a) => ({
        jwks: { refresh_interval: '1h', min_refetch_interval: `${MIN_REFETCH_MS / 1000}s`, max_stale: '24h' },
        oauthExtra: introspectionYaml({ url: a.introspectionUrl }),
        // The floods below measure the JWKS and introspection caches' own bounds from
        // one address; the per-address limits in front of them are tested in
        // tests/rate_limits.rs.
        topExtra:
          'limits:\n  unauthenticated: { enabled: false, rate: 1/s }\n' +
          '  failed_authentications: { enabled: false, rate: 1/s }\n',
      }),
    });
    gw = stack.gateway;
    as = stack.as;
  });
  after(async () => {
    await stack?.stop();
  });

  test('key rotation: a token with a new kid is accepted after exactly one JWKS refetch, no restart', async () => {
    const pid = gw.proc.child.pid;
    const oldKid = as.currentKid;
    const oldToken = await jwtFor();
    const fetchesBefore = mainJwks().length;
    assertOk(await call(gw.publicUrl, oldToken), 'token signed with the original key');
    assert.equal(mainJwks().length, fetchesBefore, 'a token signed with a known key needs no JWKS fetch');

    await waitRefetchWindow();
    const before = mainJwks().length;
    const newKid = as.rotateKey();
    assert.notEqual(newKid, oldKid);
    const newToken = await jwtFor();
    assert.equal(decodeJwt(newToken).header.kid, newKid, 'the AS signs with the new key');

    assertOk(await call(gw.publicUrl, newToken), 'token signed with the rotated-in key');
    assert.equal(mainJwks().length, before + 1, 'exactly one JWKS refetch for the new kid');

    // More fresh tokens with the new kid, concurrently: the key is known now.
    const more = await Promise.all(Array.from({ length: 5 }, () => jwtFor()));
    for (const r of await Promise.all(more.map((t) => call(gw.publicUrl, t)))) assertOk(r, 'another new-kid token');
    // The old key stays published, so a token it signed before the rotation still works.
    assertOk(await call(gw.publicUrl, oldToken), 'pre-rotation token');
    assert.equal(mainJwks().length, before + 1, 'no further JWKS fetch');
    assert.equal(gw.proc.exitInfo, null, 'mcpgate is still running');
    assert.equal(gw.proc.child.pid, pid);
  });

  test('1,000 tokens with random kids -> all 401, JWKS fetched at most once per min_refetch_interval', async () => {
    const tokens = forgeTokens(1000, { issuer: as.issuer, audience: stack.publicUrl });
    await waitRefetchWindow();
    const upstreamBefore = stack.recorder.requests.length;
    const fetchesBefore = mainJwks().length;
    const start = Date.now();
    const results = new Array(tokens.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < tokens.length) {
          const i = next++;
          results[i] = await call(gw.publicUrl, tokens[i]);
        }
      }),
    );
    const end = Date.now();
    results.forEach((r, i) => assertInvalidToken(r, 'token signing key is unknown', `forged token #${i}`));
    assert.equal(stack.recorder.requests.length, upstreamBefore, 'no forged token reached the upstream');

    const during = mainJwks().slice(fetchesBefore);
    const windows = Math.floor((end - start) / MIN_REFETCH_MS) + 1;
    assert.ok(during.length >= 1, 'an unknown kid must trigger a refetch once the window is open');
    assert.ok(
      during.length <= windows,
      `${during.length} JWKS fetches during a ${end - start} ms flood; at most ${windows} allowed`,
    );
    // Over the whole run so far, no two fetches of this gateway closer than min_refetch_interval.
    const all = mainJwks();
    for (let i = 1; i < all.length; i++) {
      const gap = all[i].at - all[i - 1].at;
      assert.ok(gap >= MIN_REFETCH_MS - SLACK_MS, `JWKS fetches ${i - 1} and ${i} only ${gap} ms apart`);
    }
  });

  for (const mode of ['error', 'reset']) {
    test(`JWKS endpoint outage (${mode === 'error' ? 'HTTP 500' : 'connection dropped'}) -> tokens with known keys still accepted`, async () => {
      const known = await jwtFor(); // fresh: not in the verified-token cache
      const alsoKnown = await jwtFor();
      assertOk(await call(gw.publicUrl, known), 'known-key token before the outage');
      await waitRefetchWindow();
      as.faults.jwks = mode;
      try {
        const direct = await fetch(as.jwksUrl).then((r) => r.status, (err) => err.cause?.code ?? err.message);
        assert.ok(mode === 'error' ? direct === 500 : typeof direct === 'string', `JWKS endpoint not failing: ${direct}`);
        const before = mainJwks().length;
        // An unknown kid makes the gateway try the (now failing) JWKS endpoint.
        const [forged] = forgeTokens(1, { issuer: as.issuer, audience: stack.publicUrl });
        assertInvalidToken(await call(gw.publicUrl, forged), 'token signing key is unknown', 'unknown kid during outage');
        assert.equal(mainJwks().length, before + 1, 'the gateway did try to refetch (and failed)');
        // The failed refetch must not have thrown away the keys it had.
        assertOk(await call(gw.publicUrl, alsoKnown), 'uncached known-key token during the outage');
        assertOk(await call(gw.publicUrl, known), 'cached known-key token during the outage');
        assertOk(await call(gw.publicUrl, await jwtFor()), 'token minted during the outage');
      } finally {
        as.faults.jwks = null;
      }
    });
  }

  test('JWKS down for longer than max_stale -> 503 (no challenge), back to 200 once it answers again', async () => {
    const gwPort = await freePort();
    const tag = 'gw=stale';
    const stale = await startGateway({
      gwPort,
      upstreamUrl: stack.recorder.url,
      issuer: as.issuer,
      jwksUrl: `${as.issuer}/jwks?${tag}`,
      jwks: { refresh_interval: '1s', min_refetch_interval: '1s', max_stale: '2s' },
      oauthExtra: `    audiences: [${stack.publicUrl}]\n`,
    });
    try {
      const token = await jwtFor();
      assertOk(await call(stale.publicUrl, token), 'before the outage');
      as.faults.jwks = 'error';
      const outageStart = Date.now();
      // Within max_stale the last keys still verify.
      assertOk(await call(stale.publicUrl, await jwtFor()), 'right after the outage began');
      const { result, elapsed, timedOut } = await pollUntil(
        () => jwtFor().then((t) => call(stale.publicUrl, t)),
        (r) => r.status !== 200,
        { timeoutMs: 8000, intervalMs: 200 },
      );
      assert.ok(!timedOut, `still ${result.status} ${elapsed} ms into the outage (max_stale 2s)`);
      assertUnavailable(result, 'past max_stale');
      assert.ok(Date.now() - outageStart >= 1000, 'keys went stale too early');
      // The verified-token cache must not outlive the keys either.
      assertUnavailable(await call(stale.publicUrl, token), 'cached token past max_stale');
      const failedFetches = as.hits.filter((h) => h.url === `/jwks?${tag}` && h.at >= outageStart).length;
      assert.ok(failedFetches >= 1, 'the gateway retried the JWKS during the outage');

      as.faults.jwks = null;
      const back = await pollUntil(() => call(stale.publicUrl, token), (r) => r.status === 200, {
        timeoutMs: 6000,
        intervalMs: 200,
      });
      assert.ok(!back.timedOut, `not back to 200 after the JWKS recovered: ${back.result.status}`);
    } finally {
      as.faults.jwks = null;
      await stale.stop();
    }
  });

  test('opaque token -> introspected (client_secret_basic), 200, answer cached', async () => {
    const token = await opaqueFor();
    assert.ok(!token.includes('.'), `expected an opaque token from the AS, got ${token.slice(0, 40)}…`);
    const real = await introspectToken(as, token);
    assert.equal(real.active, true);
    assert.equal(real.aud, stack.publicUrl);

    const before = introspections().length;
    assertOk(await call(gw.publicUrl, token), 'active opaque token');
    assert.equal(introspections().length, before + 1, 'the gateway introspected the token once');
    assertOk(await call(gw.publicUrl, token), 'same token again');
    assert.equal(introspections().length, before + 1, 'second use within cache_ttl served from the cache');
    assert.equal(stack.recorder.requests.at(-1).headers.authorization, undefined, 'upstream never sees the token');
  });

  test('opaque token revoked at the AS -> refused with 401 within cache_ttl', async () => {
    const token = await opaqueFor();
    assertOk(await call(gw.publicUrl, token), 'before revocation');
    const revokedAt = Date.now();
    assert.equal(await revokeToken(as, token, M2M_OPAQUE), 200);
    assert.equal((await introspectToken(as, token)).active, false, 'the AS itself calls it inactive');
    const { result, timedOut } = await pollUntil(() => call(gw.publicUrl, token), (r) => r.status !== 200, {
      timeoutMs: INTROSPECTION_CACHE_TTL_MS + 3000,
      intervalMs: 100,
    });
    const elapsed = Date.now() - revokedAt;
    assert.ok(!timedOut, `revoked token still accepted ${elapsed} ms after revocation`);
    assertInvalidToken(result, 'token is not active', 'revoked opaque token');
    assert.ok(elapsed <= INTROSPECTION_CACHE_TTL_MS + 3000, `refused only after ${elapsed} ms (cache_ttl 2s)`);
    // And it stays refused.
    assertInvalidToken(await call(gw.publicUrl, token), 'token is not active', 'revoked opaque token, again');
  });

  test('20 concurrent requests with one new opaque token -> one introspection call', async () => {
    const token = await opaqueFor();
    const before = introspections().length;
    const results = await Promise.all(Array.from({ length: 20 }, () => call(gw.publicUrl, token)));
    results.forEach((r, i) => assertOk(r, `concurrent request #${i}`));
    assert.equal(introspections().length, before + 1, 'concurrent lookups of one token share one request');
  });

  test('unknown opaque string -> 401 invalid_token (AS says inactive), negative answer cached briefly', async () => {
    const made = `opaque-${randomUUID()}`;
    const before = introspections().length;
    assertInvalidToken(await call(gw.publicUrl, made), 'token is not active', 'made-up opaque token');
    assertInvalidToken(await call(gw.publicUrl, made), 'token is not active', 'made-up opaque token, again');
    assert.equal(introspections().length, before + 1, 'second refusal within negative_cache_ttl from the cache');
    await sleep(1000 + SLACK_MS); // negative_cache_ttl: 1s
    assertInvalidToken(await call(gw.publicUrl, made), 'token is not active', 'made-up opaque token, later');
    assert.equal(introspections().length, before + 2, 'asked again after negative_cache_ttl');
  });

  test('introspection endpoint hangs -> 503 temporarily_unavailable after the timeout, no challenge', async () => {
    const token = await opaqueFor();
    as.faults.introspection = 'hang';
    try {
      const start = Date.now();
      const r = await call(gw.publicUrl, token);
      const elapsed = Date.now() - start;
      assertUnavailable(r, 'introspection hanging');
      assert.ok(elapsed >= INTROSPECTION_TIMEOUT_MS - SLACK_MS, `503 after only ${elapsed} ms`);
      assert.ok(elapsed < INTROSPECTION_TIMEOUT_MS + 3000, `503 only after ${elapsed} ms`);
      // JWTs do not depend on introspection (validation: jwt).
      assertOk(await call(gw.publicUrl, await jwtFor()), 'JWT while introspection hangs');
    } finally {
      as.faults.introspection = null;
    }
    // The outage was not cached as a verdict on the token.
    assertOk(await call(gw.publicUrl, token), 'same opaque token once introspection answers again');
  });

  test('introspection URL on a dead port -> 503; client_secret_post gateway works against the real endpoint', async () => {
    const deadPort = await freePort();
    const [deadPortGw, postGw] = await Promise.all([
      freePort().then((gwPort) =>
        startGateway({
          gwPort,
          upstreamUrl: stack.recorder.url,
          issuer: as.issuer,
          jwksUrl: `${as.issuer}/jwks?gw=dead-introspection`,
          jwks: { refresh_interval: '1h' },
          oauthExtra:
            `    audiences: [${stack.publicUrl}]\n` +
            introspectionYaml({ url: `http://127.0.0.1:${deadPort}/token/introspection` }),
        }),
      ),
      freePort().then((gwPort) =>
        startGateway({
          gwPort,
          upstreamUrl: stack.recorder.url,
          issuer: as.issuer,
          jwksUrl: `${as.issuer}/jwks?gw=post`,
          jwks: { refresh_interval: '1h' },
          oauthExtra:
            `    audiences: [${stack.publicUrl}]\n` +
            introspectionYaml({ url: as.introspectionUrl, authMethod: 'client_secret_post' }),
        }),
      ),
    ]);
    try {
      const token = await opaqueFor();
      assertUnavailable(await call(deadPortGw.publicUrl, token), 'introspection endpoint refused the connection');
      assertOk(await call(deadPortGw.publicUrl, await jwtFor()), 'JWT through the same gateway');
      assertOk(await call(postGw.publicUrl, token), 'same opaque token via client_secret_post');
    } finally {
      await Promise.all([deadPortGw.stop(), postGw.stop()]);
    }
  });
});
