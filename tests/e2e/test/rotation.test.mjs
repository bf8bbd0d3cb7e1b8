// Signing-key rotation with the real oidc-provider, the way providers do it: the new
// key is published and used for signing at the same moment (oidc-provider's rotation,
// Keycloak's new higher-priority key). A token signed with it must be accepted on its
// first request, at the cost of one JWKS refetch, also when the rotation comes right
// after mcpgate's start-up fetch or right after a scheduled refresh: only refetches
// caused by unknown kids are rate-limited (min_refetch_interval, here the default 30s).
//
// One stack (AS, server-everything, recorder); each test starts its own gateway right
// before rotating, with a JWKS URL tagged by a query string, so the AS's hit log counts
// that gateway's fetches alone and no test depends on another having run first.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt, requestToken } from '../lib/as.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { INITIALIZE_BODY, postMcp } from '../lib/mcp.mjs';
import { freePort } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

const KID_REFETCHED = 'JWKS refetched for an unknown kid';
const REFRESH_INTERVAL_S = 4;

describe('signing-key rotation with oidc-provider: accepted on the first request, one JWKS refetch', () => {
  let stack;
  let as;
  const gateways = [];
  const jwtFor = async () =>
    (await requestToken(as, { scope: 'mcp:connect', resource: stack.publicUrl })).access_token;

  /** A gateway of its own for this stack's resource; `fetches()` counts its JWKS fetches. */
  async function startTaggedGateway(tag, jwks) {
    const gw = await startGateway({
      gwPort: await freePort(),
      upstreamUrl: stack.recorder.url,
      issuer: as.issuer,
      jwksUrl: `${as.issuer}/jwks?gw=${tag}`,
      jwks: { min_refetch_interval: '30s', max_stale: '1h', ...jwks },
      // The AS issues tokens for the stack's public URL only.
      oauthExtra: `    audiences: [${stack.publicUrl}]\n`,
    });
    gateways.push(gw);
    return { gw, fetches: () => as.hits.filter((h) => h.url === `/jwks?gw=${tag}`) };
  }

  /** initialize with `token`; asserts 200 with the upstream's answer. */
  async function assertAccepted(gw, token, what) {
    const res = await postMcp(gw.publicUrl, INITIALIZE_BODY, { token });
    const body = await res.text();
    assert.equal(res.status, 200, `${what}: ${res.status} ${res.headers.get('www-authenticate') ?? ''} ${body.slice(0, 300)}`);
    assert.match(body, /"serverInfo"/, what);
  }

  /** Rotates the AS's signing key; the first request with a token it signs must pass. */
  async function rotateAndCall(t, gw) {
    const newKid = as.rotateKey();
    const token = await jwtFor();
    assert.equal(decodeJwt(token).header.kid, newKid, 'the AS signs with the new key');
    const sentAt = Date.now();
    await assertAccepted(gw, token, 'first request with a token signed by the rotated-in key');
    t.diagnostic(`first request with the rotated-in key answered 200 in ${Date.now() - sentAt} ms (refetch included)`);
  }

  const kidRefetches = (gw) => gw.proc.output.split(KID_REFETCHED).length - 1;

  before(async () => {
    stack = await startStack({ gatewayOptions: () => ({ jwks: { refresh_interval: '1h' } }) });
    as = stack.as;
  });
  after(async () => {
    for (const gw of gateways) await gw.stop();
    await stack?.stop();
  });

  test('rotation right after mcpgate started', async (t) => {
    const { gw, fetches } = await startTaggedGateway('start', { refresh_interval: '1h' });
    const oldToken = await jwtFor();
    assert.equal(fetches().length, 1, 'only the start-up fetch so far');

    await rotateAndCall(t, gw);
    assert.equal(fetches().length, 2, 'exactly one JWKS refetch for the new kid');
    assert.equal(kidRefetches(gw), 1, gw.proc.output);
    // oidc-provider keeps the old key published (second): tokens it signed still pass.
    await assertAccepted(gw, oldToken, 'token signed before the rotation');
    await assertAccepted(gw, await jwtFor(), 'second token with the new key');
    assert.equal(fetches().length, 2, 'no further JWKS fetch');
  });

  test('rotation right after a scheduled refresh', async (t) => {
    const { gw, fetches } = await startTaggedGateway('refresh', { refresh_interval: `${REFRESH_INTERVAL_S}s` });
    // The first scheduled refresh: the AS has answered it (the hit is logged when the
    // request arrives, and a rotation from then on is not in that answer).
    const deadline = Date.now() + 15_000;
    while (fetches().length < 2) {
      assert.ok(Date.now() < deadline, `no scheduled refresh within 15 s (refresh_interval ${REFRESH_INTERVAL_S}s)`);
      await sleep(10);
    }
    const sinceStart = fetches()[1].at - fetches()[0].at;
    assert.ok(sinceStart >= (REFRESH_INTERVAL_S - 1) * 1000, `second fetch ${sinceStart} ms after the first is no scheduled refresh`);

    await rotateAndCall(t, gw);
    const gap = fetches().at(-1).at - fetches()[1].at;
    assert.equal(fetches().length, 3, 'exactly one JWKS refetch for the new kid');
    assert.equal(kidRefetches(gw), 1, gw.proc.output);
    t.diagnostic(`refetch ${gap} ms after the scheduled refresh (min_refetch_interval 30s)`);
    assert.ok(gap < REFRESH_INTERVAL_S * 1000, 'the third fetch is the unknown-kid refetch, not the next scheduled refresh');
  });
});
