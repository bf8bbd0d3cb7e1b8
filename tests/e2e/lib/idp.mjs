// An OpenID provider (oidc-provider) for mcpgate's authorization-server façade to
// sign users in at: registration off, one confidential client (mcpgate's own,
// registered in advance as an operator would), and devInteractions' login and
// consent pages for a real browser to fill in. Unlike as.mjs it issues nothing for
// the MCP resource: mcpgate only needs the ID token that names the user.
import http from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

/**
 * Start the provider on a random loopback port. `redirectUri` is mcpgate's
 * callback (`http://127.0.0.1:<gw port>/oauth/callback`), the only one its client
 * may use. Returns:
 * - `issuer`, `client` ({ clientId, clientSecret }: mcpgate's client there);
 * - `issued`: every successful token response as { clientId, clientAuth
 *   ('client_secret_basic' or 'other'), grantType, idToken, accessToken };
 * - `signingKey`: its private signing key (a JWK), for a test that must mint a
 *   token this provider would have issued;
 * - `hits`: every request as { method, path };
 * - `close()`.
 */
export async function startIdentityProvider({ redirectUri }) {
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const client = { clientId: 'mcpgate', clientSecret: randomBytes(24).toString('base64url') };
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = { ...privateKey.export({ format: 'jwk' }), kid: `idp-${randomUUID()}`, alg: 'RS256', use: 'sig' };
  const provider = new Provider(issuer, {
    jwks: { keys: [key] },
    clients: [
      {
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        scope: 'openid',
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // Any login name is an account whose sub is that name (devInteractions' login page).
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    scopes: ['openid'],
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: false },
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('[idp] server_error', err));
  const issued = [];
  provider.on('grant.success', (ctx) => {
    issued.push({
      clientId: ctx.oidc.client?.clientId,
      clientAuth: ctx.headers.authorization ? 'client_secret_basic' : 'other',
      grantType: ctx.oidc.params?.grant_type,
      idToken: ctx.body?.id_token,
      accessToken: ctx.body?.access_token,
    });
  });
  const hits = [];
  const callback = provider.callback();
  server.on('request', (req, res) => {
    hits.push({ method: req.method, path: req.url.split('?')[0] });
    callback(req, res);
  });
  const close = () =>
    new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    });
  return { issuer, client, issued, hits, close, signingKey: key };
}
