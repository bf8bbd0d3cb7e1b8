// A real OAuth 2.1 authorization server (oidc-provider) running inside the
// test process on a random loopback port.
//
// It issues RS256 JWT access tokens (typ at+jwt) for exactly one resource:
// the gateway's public_url. That is what mcpgate validates: iss = issuer,
// aud = public_url, signature via <issuer>/jwks.
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

export const ALL_SCOPES = 'mcp:connect mcp:tools mcp:admin';
export const M2M = { clientId: 'm2m', clientSecret: 'm2m-secret' };

/**
 * Start the AS. `resource` is the only resource indicator it accepts and
 * also the default one (so a token request without `resource` still gets a
 * JWT for the gateway).
 */
export async function startAuthServer({ resource, accessTokenTTL = 300 }) {
  // Listen first: the issuer must carry the port, and the provider needs the
  // issuer at construction time.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `e2e-${randomUUID()}`, alg: 'RS256', use: 'sig' };

  const provider = new Provider(issuer, {
    jwks: { keys: [signingKey] },
    clients: [
      {
        client_id: M2M.clientId,
        client_secret: M2M.clientSecret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: ALL_SCOPES,
      },
    ],
    // Set explicitly so oidc-provider does not print its default-TTL notice.
    ttl: { ClientCredentials: accessTokenTTL },
    scopes: ['openid', 'offline_access', ...ALL_SCOPES.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      registration: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== resource) throw new errors.InvalidTarget();
          return {
            scope: ALL_SCOPES,
            accessTokenFormat: 'jwt',
            accessTokenTTL,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  // oidc-provider logs every server_error via this event; keep them visible.
  provider.on('server_error', (_ctx, err) => console.error('[as] server_error', err));

  // Count hits per path so tests can assert the discovery sequence happened
  // against the real AS, not just in the client's imagination.
  const hits = [];
  const callback = provider.callback();
  server.on('request', (req, res) => {
    hits.push({ method: req.method, path: req.url.split('?')[0] });
    callback(req, res);
  });

  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    tokenUrl: `${issuer}/token`,
    hits,
    provider,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * client_credentials token request with client_secret_basic, as a plain
 * HTTP call. Returns the parsed JSON body and the status.
 */
export async function requestToken(as, { scope, resource, clientId = M2M.clientId, clientSecret = M2M.clientSecret }) {
  const body = new URLSearchParams({ grant_type: 'client_credentials' });
  if (scope) body.set('scope', scope);
  if (resource) body.set('resource', resource);
  const res = await fetch(as.tokenUrl, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body,
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Decode (without verifying) a JWT's header and payload. */
export function decodeJwt(token) {
  const [h, p] = token.split('.');
  const dec = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  return { header: dec(h), payload: dec(p) };
}
