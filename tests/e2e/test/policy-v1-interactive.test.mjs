// SDK v1 (@modelcontextprotocol/sdk 1.32.2) as an interactive client: the
// authorization-code flow with PKCE against oidc-provider's login and consent
// pages (driven headlessly, lib/as.mjs headlessAuthorize), and what it does
// with mcpgate's 403 insufficient_scope step-up challenge.
//
// v1's StreamableHTTPClientTransport.send(), on 403 insufficient_scope, sets
// its scope to the challenge's `scope` (replacing what it had) and calls
// auth(). For a provider with a redirectUrl and no refresh token, auth()
// starts a new authorization with exactly that scope: it calls
// redirectToAuthorization(url) and the transport throws UnauthorizedError. The
// app lets the user log in and consent, hands the code to
// transport.finishAuth(code), and retries. So the new token has exactly the
// challenge's scopes, and the old ones are lost unless the challenge names
// them: that is what auth.oauth.scope_challenge_include_token_scopes is for.
//
// Two stacks, both with scopes: { initialize: [mcp:connect], tools:
// { get-env: [[mcp:admin]] } } and the AS's login/consent pages on:
//   flag on   scope_challenge_include_token_scopes: true -> v1 steps up, as
//             long as it holds no refresh token (with one, auth() refreshes,
//             which cannot add scopes, and v1 gives up)
//   flag off  the default -> v1 trades one scope for the other on every round
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { INTERACTIVE, INTERACTIVE_REFRESH, cookieJar, decodeJwt, headlessAuthorize } from '../lib/as.mjs';
import { UPSTREAM_CREDENTIAL } from '../lib/gateway.mjs';
import { describeLog, loggingFetch } from '../lib/logging-fetch.mjs';
import { assertUpstreamClean, expectedNoTokenChallenge } from '../lib/mcp.mjs';
import { startStack } from '../lib/stack.mjs';

const SCOPES = `scopes:
  initialize: [mcp:connect]
  tools:
    get-env: [[mcp:admin]]
`;
const INCLUDE_TOKEN_SCOPES = '    scope_challenge_include_token_scopes: true\n';
const GET_ENV = { name: 'get-env', arguments: {} };

const scopeSet = (s) => new Set((s ?? '').split(/\s+/).filter(Boolean));
const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

function challenge(gateway, scope, description = 'insufficient scopes for tool get-env') {
  return `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${gateway.metadataUrl}", error_description="${description}"`;
}

/** Upstream POSTs whose body calls tool `name`. */
function upstreamCalls(recorder, name) {
  return recorder.requests.filter((r) => {
    try {
      const m = JSON.parse(r.body);
      return (Array.isArray(m) ? m : [m]).some((x) => x.method === 'tools/call' && x.params?.name === name);
    } catch {
      return false;
    }
  });
}

/**
 * A v1 OAuthClientProvider for a public, pre-registered client (INTERACTIVE
 * or INTERACTIVE_REFRESH) using the authorization-code flow with PKCE, kept in
 * memory the way a desktop app would keep it. redirectToAuthorization()
 * records the URL in `authorizations` instead of opening a browser; the test
 * plays the browser.
 */
class AuthCodeProvider {
  constructor({ clientId = INTERACTIVE.clientId, scope = 'mcp:connect' } = {}) {
    this.clientId = clientId;
    this.scope = scope;
    this.authorizations = [];
    this._tokens = undefined;
    this._codeVerifier = undefined;
    this._state = undefined;
  }

  get redirectUrl() {
    return INTERACTIVE.redirectUri;
  }

  get clientMetadata() {
    return {
      client_name: 'mcpgate-e2e v1 interactive',
      redirect_uris: [INTERACTIVE.redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: this.scope,
    };
  }

  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }

  get lastState() {
    return this._state;
  }

  clientInformation() {
    return { client_id: this.clientId, token_endpoint_auth_method: 'none' };
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
  }

  redirectToAuthorization(url) {
    this.authorizations.push(new URL(url));
  }

  saveCodeVerifier(verifier) {
    this._codeVerifier = verifier;
  }

  codeVerifier() {
    if (!this._codeVerifier) throw new Error('no code verifier saved');
    return this._codeVerifier;
  }
}

/**
 * One user with one v1 app and one browser: the app's provider, client,
 * transport (replaced once after the first authorization, as v1's own OAuth
 * example does), the browser's cookies, and every exchange the app made
 * (`log`; the browser's requests are not in it).
 */
class InteractiveApp {
  constructor(stack, { clientId = INTERACTIVE.clientId } = {}) {
    this.stack = stack;
    this.clientId = clientId;
    this.provider = new AuthCodeProvider({ clientId });
    this.jar = cookieJar();
    const { fetch, log } = loggingFetch();
    this.fetch = fetch;
    this.log = log;
    this.client = new Client({ name: 'mcpgate-e2e-v1-interactive', version: '0.0.0' });
    this.transport = this.newTransport();
    this.logins = [];
  }

  newTransport() {
    return new StreamableHTTPClientTransport(new URL(this.stack.publicUrl), { authProvider: this.provider, fetch: this.fetch });
  }

  /** The authorization request v1 just started (the last one recorded), checked for what does not vary. */
  lastAuthorization(expectedCount) {
    const all = this.provider.authorizations;
    assert.equal(all.length, expectedCount, `authorizations started: ${all.map((u) => u.href).join('\n')}`);
    const url = all.at(-1);
    assert.equal(`${url.origin}${url.pathname}`, `${this.stack.as.issuer}/auth`);
    const p = url.searchParams;
    assert.equal(p.get('response_type'), 'code');
    assert.equal(p.get('client_id'), this.clientId);
    assert.equal(p.get('redirect_uri'), INTERACTIVE.redirectUri);
    assert.equal(p.get('code_challenge_method'), 'S256');
    assert.ok(p.get('code_challenge'), 'no PKCE code_challenge');
    assert.equal(p.get('resource'), this.stack.publicUrl, 'RFC 8707 resource should be the gateway');
    assert.equal(p.get('state'), this.provider.lastState);
    return url;
  }

  /** The user logs in (if the AS asks) and consents in the browser; the app finishes with the code. */
  async completeAuthorization(url) {
    const result = await headlessAuthorize(url, { jar: this.jar, login: 'alice' });
    assert.equal(result.state, url.searchParams.get('state'), 'state came back unchanged');
    this.logins.push(result);
    await this.transport.finishAuth(result.code);
    return result;
  }

  /**
   * connect(): initialize gets 401, v1 starts an authorization with the 401's
   * scope (mcp:connect) and throws; the user logs in and consents; finishAuth;
   * connect again on a new transport with the token.
   */
  async connect() {
    await assert.rejects(this.client.connect(this.transport), UnauthorizedError);
    const first = this.lastAuthorization(1);
    assert.equal(first.searchParams.get('scope'), 'mcp:connect');
    const { pages } = await this.completeAuthorization(first);
    assert.deepEqual(pages, ['login', 'consent']);
    this.transport = this.newTransport();
    await this.client.connect(this.transport);

    const gw = this.stack.gateway;
    assert.equal(this.log[0].status, 401, describeLog(this.log));
    assert.equal(this.log[0].wwwAuthenticate, expectedNoTokenChallenge(gw));
    assert.equal(this.log.filter((e) => e.status === 401).length, 1, describeLog(this.log));
  }

  async toolNames() {
    return (await this.client.listTools()).tools.map((t) => t.name);
  }

  /** Tokens the AS issued to this app's client since `from` (an index into stack.as.issued). */
  issuedSince(from) {
    return this.stack.as.issued.slice(from).filter((t) => t.clientId === this.clientId);
  }

  /** The WWW-Authenticate of every 403 the app got, in order. */
  forbidden() {
    return this.log.filter((e) => e.status === 403).map((e) => e.wwwAuthenticate);
  }

  async close() {
    await this.client.close().catch(() => {});
  }
}

describe('SDK v1 authorization-code client, scope_challenge_include_token_scopes: true', () => {
  let stack;
  before(async () => {
    stack = await startStack({
      interactive: true,
      gatewayOptions: () => ({ scopesYaml: SCOPES, oauthExtra: INCLUDE_TOKEN_SCOPES }),
    });
  });
  after(async () => {
    await stack?.stop();
  });

  test('steps up: 403 -> new authorization for token + challenged scopes -> finishAuth -> retry in the same session -> 200', async () => {
    const app = new InteractiveApp(stack);
    const issuedBefore = stack.as.issued.length;
    const callsBefore = upstreamCalls(stack.recorder, 'get-env').length;
    try {
      await app.connect();
      const sessionId = app.transport.sessionId;
      assert.ok(sessionId, 'no MCP session after connect');
      const before = await app.toolNames();
      assert.ok(before.includes('echo') && !before.includes('get-env'), `tools/list before step-up: ${before.join(', ')}`);

      // The call is refused; v1 takes the challenge's scope and starts a new authorization with it.
      await assert.rejects(app.client.callTool(GET_ENV), UnauthorizedError);
      assert.deepEqual(app.forbidden(), [challenge(stack.gateway, 'mcp:connect mcp:admin')], describeLog(app.log));
      assert.equal(app.transport._scope, 'mcp:connect mcp:admin');
      const stepUp = app.lastAuthorization(2);
      assert.deepEqual(scopeSet(stepUp.searchParams.get('scope')), scopeSet('mcp:connect mcp:admin'));
      assert.equal(upstreamCalls(stack.recorder, 'get-env').length, callsBefore, 'the refused call reached the upstream');

      // Same browser: logged in already, only the consent page for the new scope.
      const { pages } = await app.completeAuthorization(stepUp);
      assert.deepEqual(pages, ['consent']);

      // The app retries the call in the same MCP session, with the new token.
      const result = await app.client.callTool(GET_ENV);
      assert.notEqual(result.isError, true, JSON.stringify(result).slice(0, 500));
      assert.equal(JSON.parse(textOf(result)).PORT, String(stack.everything.port));
      assert.equal(app.transport.sessionId, sessionId, 'the step-up should not need a new MCP session');
      const afterNames = await app.toolNames();
      assert.ok(afterNames.includes('get-env'), `tools/list after step-up: ${afterNames.join(', ')}`);

      // Two tokens, both JWTs for the gateway; the second one carries both scopes.
      const issued = app.issuedSince(issuedBefore);
      assert.deepEqual(issued.map((t) => t.grantType), ['authorization_code', 'authorization_code']);
      const [first, second] = issued.map((t) => decodeJwt(t.accessToken).payload);
      assert.deepEqual(scopeSet(first.scope), scopeSet('mcp:connect'));
      assert.deepEqual(scopeSet(second.scope), scopeSet('mcp:connect mcp:admin'));
      for (const p of [first, second]) {
        assert.equal(p.aud, stack.publicUrl);
        assert.equal(p.iss, stack.as.issuer);
        assert.equal(p.sub, 'alice');
        assert.equal(p.client_id, INTERACTIVE.clientId);
      }
      const held = app.provider.tokens();
      assert.equal(held?.access_token, issued[1].accessToken, 'the app should now use the second token');
      assert.equal(held?.refresh_token, undefined, 'no refresh token: v1 re-authorizes instead of refreshing');

      // One 403 in all, the retried call reached the upstream once, no token did.
      assert.equal(app.forbidden().length, 1, describeLog(app.log));
      assert.equal(upstreamCalls(stack.recorder, 'get-env').length - callsBefore, 1);
      for (const { accessToken: token } of issued) assertUpstreamClean(stack.recorder, { token, credential: UPSTREAM_CREDENTIAL });
    } finally {
      await app.close();
    }
  });

  test('but not while it holds a refresh token: it refreshes (same scope), gets the same 403 and gives up', async () => {
    // auth() prefers refreshing to a new authorization, and a refresh cannot add scopes.
    const app = new InteractiveApp(stack, { clientId: INTERACTIVE_REFRESH.clientId });
    const issuedBefore = stack.as.issued.length;
    const callsBefore = upstreamCalls(stack.recorder, 'get-env').length;
    try {
      await app.connect();
      assert.ok(app.provider.tokens()?.refresh_token, 'the AS issued no refresh token');
      await assert.rejects(app.client.callTool(GET_ENV), /Server returned 403 after trying upscoping/);
      assert.equal(app.transport._scope, 'mcp:connect mcp:admin', 'v1 did take the challenge scope');
      app.lastAuthorization(1); // no new authorization was started
      const stepUp = challenge(stack.gateway, 'mcp:connect mcp:admin');
      assert.deepEqual(app.forbidden(), [stepUp, stepUp], describeLog(app.log));
      const refreshes = app.log
        .filter((e) => e.method === 'POST' && e.url === stack.as.tokenUrl)
        .map((e) => new URLSearchParams(e.requestBody ?? ''))
        .filter((p) => p.get('grant_type') === 'refresh_token');
      assert.equal(refreshes.length, 1, describeLog(app.log));
      assert.equal(refreshes[0].get('scope'), null, 'v1 sends no scope when refreshing');
    } finally {
      await app.close();
    }
    const issued = app.issuedSince(issuedBefore);
    assert.deepEqual(issued.map((t) => t.grantType), ['authorization_code', 'refresh_token']);
    for (const t of issued) assert.deepEqual(scopeSet(decodeJwt(t.accessToken).payload.scope), scopeSet('mcp:connect'));
    assert.equal(upstreamCalls(stack.recorder, 'get-env').length, callsBefore);
  });
});

describe('SDK v1 authorization-code client, scope_challenge_include_token_scopes: false (default)', () => {
  let stack;
  before(async () => {
    stack = await startStack({ interactive: true, gatewayOptions: () => ({ scopesYaml: SCOPES }) });
  });
  after(async () => {
    await stack?.stop();
  });

  test('never gets there: each new authorization asks only for the last challenge, so the new token loses the old scope', async () => {
    const app = new InteractiveApp(stack);
    const issuedBefore = stack.as.issued.length;
    const needAdmin = challenge(stack.gateway, 'mcp:admin');
    const needConnect = challenge(stack.gateway, 'mcp:connect', 'missing required scopes: mcp:connect');
    try {
      await app.connect();
      assert.ok(!(await app.toolNames()).includes('get-env'));

      // Round 1: the challenge names only mcp:admin; v1 asks for mcp:admin alone.
      await assert.rejects(app.client.callTool(GET_ENV), UnauthorizedError);
      assert.deepEqual(app.forbidden(), [needAdmin], describeLog(app.log));
      const round1 = app.lastAuthorization(2);
      assert.equal(round1.searchParams.get('scope'), 'mcp:admin');
      await app.completeAuthorization(round1);

      // Its token has mcp:admin but not mcp:connect, which every request needs:
      // the retried call is refused for mcp:connect, and v1 asks for that alone.
      await assert.rejects(app.client.callTool(GET_ENV), UnauthorizedError);
      assert.deepEqual(app.forbidden(), [needAdmin, needConnect], describeLog(app.log));
      const round2 = app.lastAuthorization(3);
      assert.equal(round2.searchParams.get('scope'), 'mcp:connect');
      await app.completeAuthorization(round2);

      // Back where it started: a token with mcp:connect only, refused for mcp:admin.
      await assert.rejects(app.client.callTool(GET_ENV), UnauthorizedError);
      assert.deepEqual(app.forbidden(), [needAdmin, needConnect, needAdmin], describeLog(app.log));
      assert.equal(app.lastAuthorization(4).searchParams.get('scope'), 'mcp:admin');

      const scopes = app.issuedSince(issuedBefore).map((t) => decodeJwt(t.accessToken).payload.scope);
      assert.deepEqual(scopes, ['mcp:connect', 'mcp:admin', 'mcp:connect']);
      assert.equal(upstreamCalls(stack.recorder, 'get-env').length, 0, 'a refused call reached the upstream');
    } finally {
      await app.close();
    }
  });
});
