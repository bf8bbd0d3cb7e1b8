// A real OAuth 2.1 authorization server (oidc-provider) running inside the
// test process on a random loopback port.
//
// It issues RS256 JWT access tokens (typ at+jwt) for exactly one resource:
// the gateway's public_url. That is what mcpgate validates: iss = issuer,
// aud = public_url, signature via <issuer>/jwks. (With `upstreamResource`, also
// for that second resource, to mcpgate's own client only: see UPSTREAM_CLIENT.)
import http from 'node:http';
import { createPublicKey, generateKeyPairSync, randomUUID, verify } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

export const ALL_SCOPES = 'mcp:connect mcp:tools mcp:admin';
export const M2M = { clientId: 'm2m', clientSecret: 'm2m-secret' };
/** A second machine client for the same resource: another principal (its own client_id and sub). */
export const M2M_B = { clientId: 'm2m-b', clientSecret: 'm2m-b-secret' };
/** Gets opaque (non-JWT) access tokens for the same resource, to exercise introspection. */
export const M2M_OPAQUE = { clientId: 'm2m-opaque', clientSecret: 'm2m-opaque-secret' };
/** Confidential client the gateway uses at /token/introspection (RFC 7662 needs client auth). */
export const INTROSPECTOR = { clientId: 'gateway-introspector', clientSecret: 'introspector-secret' };
/**
 * mcpgate's own confidential client for its upstream (`upstream.oauth`), registered only
 * when startAuthServer() gets `upstreamResource`: client_credentials, scope
 * UPSTREAM_SCOPE, tokens only for `upstreamResource`. Its secret has characters that
 * must be form-encoded (RFC 6749 §2.3.1 for Basic, the form body for post).
 * oidc-provider accepts client_secret_basic and client_secret_post from any secret
 * client, whatever it registered, so `issued[].clientAuth` tells which one was used.
 */
export const UPSTREAM_CLIENT = { clientId: 'mcpgate-upstream', clientSecret: 'up secret:/+&%=' };
/** The one scope UPSTREAM_CLIENT may have, and only for `upstreamResource`. */
export const UPSTREAM_SCOPE = 'upstream:tools';
/** RFC 8693's grant type, registered with `tokenExchange: true`. */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/**
 * Public client (no secret, PKCE) for the authorization-code flow, pre-registered (no DCR).
 * Nothing listens at its redirect URI: headlessAuthorize() stops at the redirect to it and
 * reads the code from the Location. It may not use refresh_token, so the AS never issues a
 * refresh token to it: a client that holds none has to start a new authorization to get
 * another token.
 */
export const INTERACTIVE = {
  clientId: 'mcp-interactive',
  redirectUri: 'http://127.0.0.1/mcpgate-e2e/callback',
};
/**
 * The same, but allowed refresh_token: the AS issues it a refresh token with every
 * authorization-code token (without offline_access, as many ASes do).
 */
export const INTERACTIVE_REFRESH = {
  clientId: 'mcp-interactive-refresh',
  redirectUri: INTERACTIVE.redirectUri,
};

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `e2e-${randomUUID()}`, alg: 'RS256', use: 'sig' };
}

/**
 * Start the AS. `resource` is the only resource indicator it accepts and
 * also the default one (so a token request without `resource` still gets a
 * JWT for the gateway). Client M2M_OPAQUE gets opaque tokens for the same
 * resource instead of JWTs. `extraScopes` (array) adds scopes to ALL_SCOPES:
 * the AS knows them and M2M / M2M_B / M2M_OPAQUE / INTERACTIVE / INTERACTIVE_REFRESH
 * may request them. `interactive: true` turns on oidc-provider's
 * devInteractions (the login and consent pages at /interaction/<uid>) for the
 * authorization-code flow of INTERACTIVE and INTERACTIVE_REFRESH, driven by
 * headlessAuthorize(); off by default because oidc-provider prints a warning
 * whenever they are on. `upstreamResource` (a URI) registers UPSTREAM_CLIENT and
 * makes that URI a second resource indicator, granted only to it (and its default
 * one), with scope UPSTREAM_SCOPE: tokens that mcpgate gets for its upstream, which
 * no other client can get and which are not valid at the gateway. `resources` (URIs)
 * are more resource indicators granted like `resource` (one gateway's several
 * routes); a request naming none still gets `resource`.
 *
 * Test hooks on the returned object:
 * - `hits`: every request as { method, path, url, at } (url keeps the query,
 *   at = Date.now()).
 * - `issued`: every successful token response as { clientId, clientAuth
 *   ('client_secret_basic', 'client_secret_post' or 'none': how the client
 *   authenticated), grantType, requestedScope, requestedResource, scope
 *   (granted, as in the response), accessToken, at }.
 * - `faults.jwks = 'error' | 'reset'`: /jwks answers 500, or the connection is
 *   dropped without an answer (the rest of the AS keeps working).
 * - `faults.introspection = 'hang'`: /token/introspection never answers.
 * - with `tokenExchange: true` (and `upstreamResource`), `exchanges`: every token
 *   exchange request as { clientId, subjectToken, audience, status ('issued' or the
 *   OAuth error), accessToken }.
 * - `rotateKey()`: sign with a fresh key from now on (the old one stays
 *   published), by swapping in a new Provider behind the same listener, so
 *   the issuer and port do not change.
 */
export async function startAuthServer({
  resource,
  resources = [],
  accessTokenTTL = 300,
  extraScopes = [],
  interactive = false,
  upstreamResource,
  tokenExchange = false,
}) {
  // What the AS knows, what M2M / M2M_B / M2M_OPAQUE may request, and what the
  // resource (the gateway) may be granted: ALL_SCOPES plus the test's own.
  const scopes = [...new Set([...ALL_SCOPES.split(' '), ...extraScopes])].join(' ');
  // Listen first: the issuer must carry the port, and the provider needs the
  // issuer at construction time.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  // Newest first: oidc-provider signs with the first key that fits the alg.
  let signingKeys = [newSigningKey()];
  const issued = [];

  const makeProvider = () => {
    const provider = new Provider(issuer, {
      jwks: { keys: signingKeys },
      clients: [
        {
          client_id: M2M.clientId,
          client_secret: M2M.clientSecret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: scopes,
        },
        {
          client_id: M2M_B.clientId,
          client_secret: M2M_B.clientSecret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: scopes,
        },
        {
          client_id: M2M_OPAQUE.clientId,
          client_secret: M2M_OPAQUE.clientSecret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          scope: scopes,
        },
        {
          client_id: INTERACTIVE.clientId,
          token_endpoint_auth_method: 'none',
          application_type: 'native',
          grant_types: ['authorization_code'],
          redirect_uris: [INTERACTIVE.redirectUri],
          response_types: ['code'],
          scope: scopes,
        },
        {
          client_id: INTERACTIVE_REFRESH.clientId,
          token_endpoint_auth_method: 'none',
          application_type: 'native',
          grant_types: ['authorization_code', 'refresh_token'],
          redirect_uris: [INTERACTIVE_REFRESH.redirectUri],
          response_types: ['code'],
          scope: scopes,
        },
        {
          client_id: INTROSPECTOR.clientId,
          client_secret: INTROSPECTOR.clientSecret,
          grant_types: [],
          redirect_uris: [],
          response_types: [],
        },
        ...(upstreamResource
          ? [
              {
                client_id: UPSTREAM_CLIENT.clientId,
                client_secret: UPSTREAM_CLIENT.clientSecret,
                grant_types: tokenExchange ? ['client_credentials', TOKEN_EXCHANGE] : ['client_credentials'],
                redirect_uris: [],
                response_types: [],
                scope: UPSTREAM_SCOPE,
              },
            ]
          : []),
      ],
      // Set explicitly so oidc-provider does not print its default-TTL notice.
      ttl: {
        ClientCredentials: accessTokenTTL,
        // What the authorization-code flow uses (INTERACTIVE*; the resource's
        // accessTokenTTL below wins for access tokens).
        AccessToken: accessTokenTTL,
        AuthorizationCode: 60,
        Interaction: 600,
        Session: 3600,
        Grant: 3600,
        IdToken: 3600,
        RefreshToken: 3600,
      },
      // Any login name is an account whose sub is that name (devInteractions' login page).
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
      // A refresh token to every client allowed refresh_token (INTERACTIVE_REFRESH),
      // offline_access or not; the others get none.
      issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      scopes: ['openid', 'offline_access', ...scopes.split(' '), ...(upstreamResource ? [UPSTREAM_SCOPE] : [])],
      features: {
        devInteractions: { enabled: interactive },
        clientCredentials: { enabled: true },
        registration: { enabled: true },
        // Explicit policies (the defaults print a notice on every call): any
        // confidential client may introspect; only a token's own client may revoke it.
        introspection: { enabled: true, allowedPolicy: (_ctx, client) => client.clientAuthMethod !== 'none' },
        revocation: { enabled: true, allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId },
        resourceIndicators: {
          enabled: true,
          defaultResource: (_ctx, client) =>
            upstreamResource && client?.clientId === UPSTREAM_CLIENT.clientId ? upstreamResource : resource,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, indicator, client) => {
            if (upstreamResource && indicator === upstreamResource && client?.clientId === UPSTREAM_CLIENT.clientId) {
              return { scope: UPSTREAM_SCOPE, accessTokenFormat: 'jwt', accessTokenTTL, jwt: { sign: { alg: 'RS256' } } };
            }
            if (indicator !== resource && !resources.includes(indicator)) throw new errors.InvalidTarget();
            if (client?.clientId === M2M_OPAQUE.clientId) {
              return { scope: scopes, accessTokenFormat: 'opaque', accessTokenTTL };
            }
            return {
              scope: scopes,
              accessTokenFormat: 'jwt',
              accessTokenTTL,
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
      },
    });
    if (tokenExchange && upstreamResource) {
      provider.registerGrantType(TOKEN_EXCHANGE, exchangeHandler(provider), [
        'subject_token',
        'subject_token_type',
        'requested_token_type',
        'audience',
        'resource',
        'scope',
      ]);
    }
    // oidc-provider logs every server_error via this event; keep them visible.
    provider.on('server_error', (_ctx, err) => console.error('[as] server_error', err));
    // Every successful token response, as the AS sent it.
    provider.on('grant.success', (ctx) => {
      issued.push({
        clientId: ctx.oidc.client?.clientId,
        clientAuth: ctx.headers.authorization
          ? 'client_secret_basic'
          : ctx.oidc.params?.client_secret
            ? 'client_secret_post'
            : 'none',
        grantType: ctx.oidc.params?.grant_type,
        requestedScope: ctx.oidc.params?.scope,
        requestedResource: ctx.oidc.params?.resource,
        scope: ctx.body?.scope,
        accessToken: ctx.body?.access_token,
        at: Date.now(),
      });
    });
    return provider;
  };

  const exchanges = [];
  /**
   * RFC 8693 for UPSTREAM_CLIENT: the subject token must be a JWT access token this
   * AS signed for the gateway (`resource`), unexpired; the answer is a JWT access
   * token for `upstreamResource` (the `audience` asked for) with the subject's `sub`.
   */
  const exchangeHandler = (provider) => async (ctx) => {
    const { subject_token: subjectToken, subject_token_type: subjectType, audience } = ctx.oidc.params;
    const record = { clientId: ctx.oidc.client.clientId, subjectToken, audience };
    exchanges.push(record);
    const refuse = (error) => {
      record.status = error.error;
      throw error;
    };
    if (subjectType !== 'urn:ietf:params:oauth:token-type:access_token') {
      refuse(new errors.InvalidRequest('subject_token_type must be an access token'));
    }
    const claims = verifiedClaims(subjectToken);
    if (!claims || claims.iss !== issuer || claims.aud !== resource || !(claims.exp > Date.now() / 1000)) {
      refuse(new errors.InvalidGrant('subject_token is not a valid access token of this server for the gateway'));
    }
    if (audience !== upstreamResource) refuse(new errors.InvalidTarget('audience is not the upstream'));
    const token = new provider.AccessToken({
      accountId: claims.sub,
      client: ctx.oidc.client,
      gty: 'token_exchange',
      scope: UPSTREAM_SCOPE,
      resourceServer: new provider.ResourceServer(upstreamResource, {
        audience: upstreamResource,
        scope: UPSTREAM_SCOPE,
        accessTokenFormat: 'jwt',
        accessTokenTTL,
        jwt: { sign: { alg: 'RS256' } },
      }),
    });
    const value = await token.save();
    record.status = 'issued';
    record.accessToken = value;
    ctx.body = {
      access_token: value,
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: UPSTREAM_SCOPE,
    };
  };
  /** The claims of a JWT signed by one of this AS's keys, or null. */
  const verifiedClaims = (token) => {
    const [h, p, sig] = String(token).split('.');
    try {
      const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
      const jwk = signingKeys.find((k) => k.kid === header.kid);
      if (!jwk || header.alg !== 'RS256') return null;
      const { d, p: _p, q, dp, dq, qi, ...pub } = jwk;
      const ok = verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey({ key: pub, format: 'jwk' }), Buffer.from(sig, 'base64url'));
      return ok ? JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) : null;
    } catch {
      return null;
    }
  };

  let provider = makeProvider();
  let callback = provider.callback();
  const faults = { jwks: null, introspection: null };

  // Count hits per path so tests can assert the discovery sequence happened
  // against the real AS, not just in the client's imagination.
  const hits = [];
  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    hits.push({ method: req.method, path, url: req.url, at: Date.now() });
    if (path === '/jwks' && faults.jwks === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('injected JWKS outage');
      return;
    }
    if (path === '/jwks' && faults.jwks === 'reset') {
      req.socket.destroy();
      return;
    }
    if (path === '/token/introspection' && faults.introspection === 'hang') {
      req.resume(); // never answer; the caller's timeout has to fire
      return;
    }
    callback(req, res);
  });

  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    tokenUrl: `${issuer}/token`,
    introspectionUrl: `${issuer}/token/introspection`,
    revocationUrl: `${issuer}/token/revocation`,
    hits,
    issued,
    exchanges,
    faults,
    get provider() {
      return provider;
    },
    /** kid of the key new JWTs are signed with. */
    get currentKid() {
      return signingKeys[0].kid;
    },
    /** Start signing with a new key (old keys stay in the JWKS); returns its kid. */
    rotateKey() {
      signingKeys = [newSigningKey(), ...signingKeys];
      provider = makeProvider();
      callback = provider.callback();
      return signingKeys[0].kid;
    },
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

function basicAuth(clientId, clientSecret) {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
}

/** RFC 7009 revocation at the AS, as the client the token was issued to. Returns the status. */
export async function revokeToken(as, token, { clientId, clientSecret }) {
  const res = await fetch(as.revocationUrl, {
    method: 'POST',
    headers: { authorization: basicAuth(clientId, clientSecret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** RFC 7662 introspection at the AS (what the gateway sees), as INTROSPECTOR. */
export async function introspectToken(as, token, { clientId = INTROSPECTOR.clientId, clientSecret = INTROSPECTOR.clientSecret } = {}) {
  const res = await fetch(as.introspectionUrl, {
    method: 'POST',
    headers: { authorization: basicAuth(clientId, clientSecret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`introspection failed: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * The cookies one browser keeps for the AS: name, value and path, nothing
 * else (everything is on one loopback origin). A cookie set again replaces the
 * one with the same name and path; one set with a date in the past or Max-Age
 * 0 is removed (oidc-provider clears its interaction cookies that way).
 */
export function cookieJar() {
  const cookies = new Map(); // `${path}\0${name}` -> { name, value, path }
  return {
    /** Remember the Set-Cookie headers of a response to `url`. */
    store(url, setCookies) {
      for (const line of setCookies) {
        const [pair, ...attrs] = line.split(';').map((s) => s.trim());
        const eq = pair.indexOf('=');
        const name = pair.slice(0, eq);
        const value = pair.slice(eq + 1);
        let path = new URL(url).pathname.replace(/\/[^/]*$/, '') || '/';
        let expired = false;
        for (const attr of attrs) {
          const [k, v = ''] = attr.split('=');
          const key = k.toLowerCase();
          if (key === 'path') path = v || '/';
          if (key === 'max-age' && Number(v) <= 0) expired = true;
          if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
        }
        const id = `${path}\0${name}`;
        if (expired) cookies.delete(id);
        else cookies.set(id, { name, value, path });
      }
    },
    /** The Cookie header for a request to `url` (undefined when none applies). */
    header(url) {
      const p = new URL(url).pathname;
      const matching = [...cookies.values()].filter(
        (c) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`),
      );
      return matching.length ? matching.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
    },
  };
}

const unescapeHtml = (s) =>
  s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_, e) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", '#x27': "'" })[e]);

/**
 * Play the user's browser through one authorization request of the
 * authorization-code flow against the AS started with `interactive: true`:
 * GET `authorizationUrl` and follow the AS's redirects; on a devInteractions
 * page, submit its form the way a user would: the login page with
 * `prompt=login`, `login` (any name: it becomes the token's sub) and any
 * password; the consent page with `prompt=consent` (devInteractions then
 * grant everything the page listed as missing, i.e. the requested scopes for
 * the requested resource). It stops at the redirect to `redirectUri`, which is
 * never fetched.
 *
 * `jar` is the browser's cookie store: pass the same one to a later call and
 * the AS session carries over (no login page; no consent page when nothing new
 * is asked), as in a real browser.
 *
 * Returns { code, state, callback (the redirect URL), pages (the prompts
 * shown, in order, e.g. ['login', 'consent']), hops ("GET /auth -> 303" lines) }.
 * Throws on an error redirect (`?error=`), an unexpected status or page, or
 * more than `maxHops` requests.
 */
export async function headlessAuthorize(
  authorizationUrl,
  { redirectUri = INTERACTIVE.redirectUri, jar = cookieJar(), login = 'alice', maxHops = 12 } = {},
) {
  let url = new URL(authorizationUrl);
  let method = 'GET';
  let body;
  const pages = [];
  const hops = [];
  const where = () => `\n${hops.join('\n')}`;
  for (let i = 0; i < maxHops; i++) {
    const headers = {};
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method, headers, body, redirect: 'manual' });
    jar.store(url, res.headers.getSetCookie());
    hops.push(`${method} ${url.pathname} -> ${res.status}`);
    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer();
      const next = new URL(res.headers.get('location'), url);
      if (`${next.origin}${next.pathname}` === redirectUri) {
        const error = next.searchParams.get('error');
        if (error) throw new Error(`authorization failed: ${error} ${next.searchParams.get('error_description') ?? ''}${where()}`);
        const code = next.searchParams.get('code');
        if (!code) throw new Error(`redirect to ${next.href} carried no code${where()}`);
        return { code, state: next.searchParams.get('state'), callback: next, pages, hops };
      }
      if (next.origin !== url.origin) throw new Error(`the AS redirected elsewhere: ${next.href}${where()}`);
      url = next;
      method = 'GET';
      body = undefined;
      continue;
    }
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${method} ${url.href}: ${res.status}\n${text.slice(0, 500)}${where()}`);
    const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/.exec(text);
    const prompt = form && /name="prompt" value="([^"]+)"/.exec(form[2])?.[1];
    if (!prompt) throw new Error(`${url.href}: no interaction form\n${text.slice(0, 500)}${where()}`);
    pages.push(prompt);
    if (prompt === 'login') body = new URLSearchParams({ prompt, login, password: 'any' });
    else if (prompt === 'consent') body = new URLSearchParams({ prompt });
    else throw new Error(`unexpected interaction prompt ${prompt}${where()}`);
    url = new URL(unescapeHtml(form[1]), url);
    method = 'POST';
  }
  throw new Error(`no redirect to ${redirectUri} after ${maxHops} requests${where()}`);
}
