// What an interactive MCP client needs to sign in at mcpgate's authorization-server
// façade with its own OAuth code: an OAuthClientProvider (the interface of both
// TypeScript SDKs) whose redirectToAuthorization() hands the URL to a real browser,
// which allows the client on mcpgate's consent page and signs in at the identity
// provider (lib/idp.mjs); the code comes back to a loopback redirect URI
// (lib/loopback-client.mjs). And an https host for Client ID Metadata Documents, whose
// certificate mcpgate trusts through SSL_CERT_FILE.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { startEverything } from './everything.mjs';
import { startGateway } from './gateway.mjs';
import { startIdentityProvider } from './idp.mjs';
import { freePort } from './procs.mjs';

/**
 * Drive one sign-in in a fresh browser context (no cookies: mcpgate shows its consent
 * page, the provider its login page): open `url`, read and approve the consent page,
 * sign in as `login`, and wait for the redirect at `loopback` (lib/loopback-client.mjs),
 * or, for a listener in another process, for the page at `redirectUri`. Returns { params
 * (URLSearchParams at the redirect URI), consentText (the page's text) }.
 */
export async function signInWithBrowser(browser, { url, idp, loopback, redirectUri, login = 'alice' }) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const answer = loopback
      ? loopback.next()
      : page
          .waitForURL((u) => u.toString().startsWith(`${redirectUri}?`), { timeout: 30_000 })
          .then(() => new URL(page.url()).searchParams);
    await page.goto(url);
    const consentText = await page.textContent('body');
    if (new URL(page.url()).pathname !== '/oauth/consent') {
      throw new Error(`expected mcpgate's consent page, got ${page.url()}: ${consentText}`);
    }
    await Promise.all([page.waitForURL((u) => u.origin === idp.issuer), page.click('button[value="approve"]')]);
    await page.waitForSelector('input[name="login"]');
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', 'any password');
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
    await page.waitForSelector('button[type="submit"]');
    await page.click('button[type="submit"]');
    const params = await answer;
    return { params, consentText };
  } finally {
    await context.close();
  }
}

/**
 * An OAuthClientProvider for SDK v1 and v2 that signs in through the browser.
 *
 * The client is known one of three ways: `clientId` (configured at mcpgate:
 * clientInformation() returns it), `clientMetadataUrl` (a metadata document: the SDK
 * uses it when the metadata says `client_id_metadata_document_supported`), or neither
 * (the SDK registers the client itself, DCR). `keepRefreshToken: false` stores tokens
 * without their refresh token, as a client that does not keep one.
 *
 * redirectToAuthorization() starts the browser and returns at once, as the SDK expects
 * (it then throws UnauthorizedError); `signIns` holds each sign-in's promise, in order,
 * and `authorizationUrls` each URL. With `interactive = false` nothing is opened: the
 * URL is only recorded.
 */
export class BrowserOAuthProvider {
  constructor({ browser, idp, loopback, clientName, clientId, clientMetadataUrl, scope, keepRefreshToken = true }) {
    this.browser = browser;
    this.idp = idp;
    this.loopback = loopback;
    this.clientName = clientName;
    this.configuredClientId = clientId;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this.scope = scope;
    this.keepRefreshToken = keepRefreshToken;
    this.interactive = true;
    this.signIns = [];
    this.authorizationUrls = [];
    this.savedTokens = [];
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this._state = undefined;
    this._discovery = undefined;
  }

  get redirectUrl() {
    return this.loopback.redirectUri;
  }

  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this.loopback.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(this.scope ? { scope: this.scope } : {}),
    };
  }

  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }

  clientInformation() {
    return this._client ?? (this.configuredClientId ? { client_id: this.configuredClientId } : undefined);
  }

  saveClientInformation(info) {
    this._client = info;
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this.savedTokens.push(tokens);
    this._tokens = this.keepRefreshToken ? tokens : { ...tokens, refresh_token: undefined };
  }

  /** The client id the SDK uses (configured, the document URL, or the registered one). */
  get clientId() {
    return this.clientInformation()?.client_id;
  }

  redirectToAuthorization(url) {
    const href = url.toString();
    this.authorizationUrls.push(new URL(href));
    if (!this.interactive) return;
    const signIn = signInWithBrowser(this.browser, { url: href, idp: this.idp, loopback: this.loopback }).then((result) => {
      if (this._state !== undefined && result.params.get('state') !== this._state) {
        throw new Error(`state ${result.params.get('state')} is not the one sent (${this._state})`);
      }
      return result;
    });
    // Awaited by the test; keep an early failure from being an unhandled rejection.
    signIn.catch(() => {});
    this.signIns.push(signIn);
  }

  saveDiscoveryState(state) {
    this._discovery = state;
  }

  discoveryState() {
    return this._discovery;
  }

  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }

  codeVerifier() {
    if (!this._verifier) throw new Error('no code verifier saved');
    return this._verifier;
  }

  /** The latest sign-in started by redirectToAuthorization(). */
  lastSignIn() {
    const last = this.signIns.at(-1);
    if (!last) throw new Error('the SDK never sent the user to the authorization endpoint');
    return last;
  }
}

/**
 * An https server on 127.0.0.1 serving JSON documents (Client ID Metadata Documents)
 * at the paths given to `serve(path, document)`. Its certificate is issued by a
 * throw-away CA made here with openssl; `caFile` is that CA, for mcpgate's
 * SSL_CERT_FILE. `requests` lists every path fetched.
 */
export async function startDocumentHost() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mcpgate-e2e-cimd-'));
  const file = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '1', '-subj', '/CN=mcpgate e2e CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  openssl('req', ...ec, '-keyout', file('leaf.key'), '-out', file('leaf.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(file('leaf.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', file('leaf.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('leaf.pem'), '-days', '1', '-extfile', file('leaf.ext'));

  const documents = new Map();
  const requests = [];
  const server = https.createServer({ key: readFileSync(file('leaf.key')), cert: readFileSync(file('leaf.pem')) }, (req, res) => {
    requests.push(req.url);
    const doc = documents.get(req.url);
    if (!doc) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
    res.end(JSON.stringify(doc));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const origin = `https://127.0.0.1:${server.address().port}`;
  return {
    origin,
    caFile: file('ca.pem'),
    requests,
    /** Publish `document(url)` at `pathname`; returns the document's URL. */
    serve(pathname, document) {
      const url = `${origin}${pathname}`;
      documents.set(pathname, document(url));
      return url;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

/** The configured client of startFacade(). */
export const CONFIGURED = { clientId: 'e2e-desktop', clientName: 'Desktop Notes' };

/**
 * mcpgate as the authorization server in front of server-everything, with an identity
 * provider (lib/idp.mjs) and an https host for metadata documents (its CA in mcpgate's
 * SSL_CERT_FILE). Clients: CONFIGURED, metadata documents from loopback hosts, and
 * registration. Scopes: mcp:connect to connect, mcp:env for the tool get-env. The 403
 * also names the token's own scopes (clients that replace their scopes on step-up),
 * and the leeway is 0 so tokens expire when they say. `serverExtra` is YAML under
 * `server:` (e.g. `server.cors`). Returns { idp, everything,
 * documents, gateway, stop() }.
 */
export async function startFacade({ accessTokenTtl, serverExtra = '' }) {
  const parts = {};
  const stoppers = [];
  parts.stop = async () => {
    for (const stop of stoppers.reverse()) await stop().catch((err) => console.error('teardown error:', err));
    stoppers.length = 0;
  };
  try {
    const gwPort = await freePort();
    parts.idp = await startIdentityProvider({ redirectUri: `http://127.0.0.1:${gwPort}/oauth/callback` });
    stoppers.push(() => parts.idp.close());
    parts.everything = await startEverything();
    stoppers.push(() => parts.everything.stop());
    parts.documents = await startDocumentHost();
    stoppers.push(() => parts.documents.close());
    parts.gateway = await startGateway({
      gwPort,
      upstreamUrl: parts.everything.url,
      issuer: parts.idp.issuer,
      serverExtra,
      env: { SSL_CERT_FILE: parts.documents.caFile },
      oauthExtra: `    leeway: 0s
    scope_challenge_include_token_scopes: true
`,
      scopesYaml: `scopes:
  initialize: [mcp:connect]
  tools:
    get-env: [mcp:env]
`,
      topExtra: `authorization_server:
  provider:
    issuer: ${parts.idp.issuer}
    client_id: ${parts.idp.client.clientId}
    client_secret: ${parts.idp.client.clientSecret}
    scopes: [openid]
  clients:
    - client_id: ${CONFIGURED.clientId}
      client_name: ${CONFIGURED.clientName}
      redirect_uris: ["http://127.0.0.1/callback"]
  client_metadata_documents:
    allow_private_addresses: true
  registration:
    enabled: true
    per_ip_per_minute: 100
  access_token_ttl: ${accessTokenTtl}
  consent:
    server_name: Everything
    scope_descriptions:
      mcp:connect: Connect to the Everything server
      mcp:env: Read the server's environment
`,
    });
    stoppers.push(() => parts.gateway.stop());
    return parts;
  } catch (err) {
    await parts.stop();
    throw err;
  }
}

/** What the consent page says of each kind of client. */
export const KIND_TEXT = {
  configured: 'listed by the administrator of this server',
  cimd: 'published by 127.0.0.1',
  dcr: 'registered itself with this server',
};

/** A JWT's payload, unverified. */
export function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** A document for a public client at `url` with a loopback redirect URI. */
export function clientDocument(clientName) {
  return (url) => ({
    client_id: url,
    client_name: clientName,
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  });
}
