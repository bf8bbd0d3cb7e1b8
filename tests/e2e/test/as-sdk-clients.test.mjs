// Real MCP clients doing the whole OAuth flow themselves against mcpgate's
// authorization-server façade (issue #17), in front of server-everything: the
// TypeScript SDK v1 (@modelcontextprotocol/sdk) and v2 (@modelcontextprotocol/client),
// each as a configured client, a Client ID Metadata Document client (published on an
// https loopback host) and a client that registers itself (DCR). Each one gets mcpgate's
// 401, discovers mcpgate as its authorization server, sends the browser (Chromium) to
// the consent page and the identity provider (oidc-provider, registration off), takes
// the code at its loopback redirect URI, redeems it, and then lists tools and calls
// echo with mcpgate's token. Then: step-up to a scope the first token lacks, refresh
// after the access token expired, revocation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError as UnauthorizedV1 } from '@modelcontextprotocol/sdk/client/auth.js';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
  UnauthorizedError as UnauthorizedV2,
} from '@modelcontextprotocol/client';
import { launchBrowser } from '../lib/browser.mjs';
import { startLoopbackClient } from '../lib/loopback-client.mjs';
import {
  BrowserOAuthProvider,
  CONFIGURED,
  KIND_TEXT,
  clientDocument,
  jwtClaims,
  startFacade,
} from '../lib/sdk-oauth.mjs';

const SDKS = {
  v1: { name: 'v1', Client: ClientV1, Transport: TransportV1, Unauthorized: UnauthorizedV1 },
  v2: { name: 'v2', Client: ClientV2, Transport: TransportV2, Unauthorized: UnauthorizedV2 },
};
const ACCESS_TOKEN_TTL_S = 3;

let facade;
let gateway;
let documents;
let idp;
let browser;
const loopbacks = [];

before(async () => {
  facade = await startFacade({ accessTokenTtl: `${ACCESS_TOKEN_TTL_S}s` });
  ({ gateway, documents, idp } = facade);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const loopback of loopbacks) await loopback.close();
  await facade?.stop();
});

async function newLoopback() {
  const loopback = await startLoopbackClient();
  loopbacks.push(loopback);
  return loopback;
}

/** A provider for one kind of client: 'configured', 'cimd' or 'dcr'. */
async function newProvider(kind, { sdk, keepRefreshToken } = {}) {
  const loopback = await newLoopback();
  const common = { browser, idp, loopback, keepRefreshToken };
  if (kind === 'configured') {
    return new BrowserOAuthProvider({ ...common, clientId: CONFIGURED.clientId, clientName: CONFIGURED.clientName });
  }
  if (kind === 'cimd') {
    const clientName = `Published Notes ${sdk.name}`;
    const clientMetadataUrl = documents.serve(`/clients/${sdk.name}.json`, clientDocument(clientName));
    return new BrowserOAuthProvider({ ...common, clientMetadataUrl, clientName });
  }
  return new BrowserOAuthProvider({ ...common, clientName: `Self-registered Notes ${sdk.name}` });
}

/**
 * The SDK's own first connection: 401, discovery, the client known or registered, the
 * browser sent to mcpgate (UnauthorizedError). The sign-in runs; finishAuth() redeems
 * the code; a new connection with the same provider then initializes with the token.
 */
async function connectWithSignIn(sdk, provider) {
  const first = new sdk.Transport(new URL(gateway.publicUrl), { authProvider: provider });
  const firstClient = new sdk.Client({ name: 'mcpgate-e2e', version: '0.0.0' });
  await assert.rejects(firstClient.connect(first), (err) => err instanceof sdk.Unauthorized, 'the first connection needs a sign-in');
  const signIn = await provider.lastSignIn();
  assert.equal(signIn.params.get('error'), null, `error=${signIn.params.get('error')} ${signIn.params.get('error_description')}`);
  assert.equal(signIn.params.get('iss'), gateway.origin);
  // v2 takes the whole callback (it checks `iss`, RFC 9207); v1 takes the code.
  await first.finishAuth(sdk.name === 'v2' ? signIn.params : signIn.params.get('code'));
  await firstClient.close().catch(() => {});
  const transport = new sdk.Transport(new URL(gateway.publicUrl), { authProvider: provider });
  const client = new sdk.Client({ name: 'mcpgate-e2e', version: '0.0.0' });
  await client.connect(transport);
  return { client, transport, signIn };
}

async function echo(client, message) {
  const result = await client.callTool({ name: 'echo', arguments: { message } });
  assert.notEqual(result.isError, true, JSON.stringify(result));
  const text = result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  assert.match(text, new RegExp(`\\b${message}\\b`));
}

function count(text) {
  return gateway.proc.output.split(text).length - 1;
}

for (const sdk of Object.values(SDKS)) {
  describe(`SDK ${sdk.name}`, () => {
    for (const kind of ['configured', 'cimd', 'dcr']) {
      test(`${kind} client: signs in through the browser, lists tools and calls echo with mcpgate's token`, async (t) => {
        const started = performance.now();
        const provider = await newProvider(kind, { sdk });
        const { client, signIn } = await connectWithSignIn(sdk, provider);
        try {
          const authorization = provider.authorizationUrls[0];
          assert.equal(`${authorization.origin}${authorization.pathname}`, `${gateway.origin}/oauth/authorize`);
          // The 401's scope, and the resource mcpgate's metadata names.
          assert.equal(authorization.searchParams.get('scope'), 'mcp:connect');
          assert.equal(authorization.searchParams.get('resource'), gateway.publicUrl);
          assert.equal(authorization.searchParams.get('code_challenge_method'), 'S256');
          if (kind === 'configured') assert.equal(provider.clientId, CONFIGURED.clientId);
          if (kind === 'cimd') {
            assert.equal(provider.clientId, provider.clientMetadataUrl);
            assert.ok(documents.requests.includes(new URL(provider.clientMetadataUrl).pathname), 'mcpgate fetched the document');
          }
          if (kind === 'dcr') assert.match(provider.clientId ?? '', /.{16,}/, 'the SDK registered a client');
          assert.equal(authorization.searchParams.get('client_id'), provider.clientId);

          const page = signIn.consentText;
          for (const shown of [provider.clientName, KIND_TEXT[kind], 'Everything', 'mcp:connect', 'Connect to the Everything server']) {
            assert.ok(page.includes(shown), `the consent page shows "${shown}": ${page}`);
          }
          for (const other of Object.values(KIND_TEXT).filter((k) => k !== KIND_TEXT[kind])) {
            assert.ok(!page.includes(other), `the consent page does not say "${other}"`);
          }

          const token = provider.tokens().access_token;
          const payload = jwtClaims(token);
          assert.equal(payload.iss, gateway.origin);
          assert.equal(payload.aud, gateway.publicUrl);
          assert.equal(payload.client_id, provider.clientId);
          assert.equal(payload.sub, 'alice');
          assert.equal(payload.scope, 'mcp:connect');
          assert.ok(provider.tokens().refresh_token, 'a refresh token came with the access token');

          const { tools } = await client.listTools();
          assert.ok(tools.some((tool) => tool.name === 'echo'), tools.map((tool) => tool.name).join(', '));
          // get-env needs mcp:env: filtered out of the list for this token.
          assert.ok(!tools.some((tool) => tool.name === 'get-env'), 'get-env is listed without mcp:env');
          await echo(client, `hello-${sdk.name}-${kind}`);
        } finally {
          await client.close().catch(() => {});
        }
        t.diagnostic(`${sdk.name} ${kind}: ${Math.round(performance.now() - started)} ms`);
      });
    }

    test('step-up: a 403 insufficient_scope sends the user back to consent for the new scope, then the call succeeds', async () => {
      // v1 refreshes instead of re-authorizing when it holds a refresh token (and the
      // refreshed token has the same scopes), so the v1 client here keeps none.
      const provider = await newProvider('configured', { sdk, keepRefreshToken: sdk.name === 'v2' });
      const { client } = await connectWithSignIn(sdk, provider);
      try {
        assert.equal(jwtClaims(provider.tokens().access_token).scope, 'mcp:connect');
        const call = () => client.callTool({ name: 'get-env', arguments: {} });
        // The 403 makes the SDK start a new authorization for the wider scope.
        await assert.rejects(call(), (err) => err instanceof sdk.Unauthorized);
        assert.equal(provider.authorizationUrls.length, 2);
        const stepUp = provider.authorizationUrls[1];
        assert.deepEqual(stepUp.searchParams.get('scope').split(' ').sort(), ['mcp:connect', 'mcp:env']);
        const signIn = await provider.lastSignIn();
        assert.ok(signIn.consentText.includes('mcp:env'), `the consent page lists mcp:env: ${signIn.consentText}`);
        assert.ok(signIn.consentText.includes("Read the server's environment"), signIn.consentText);
        await client.transport.finishAuth(sdk.name === 'v2' ? signIn.params : signIn.params.get('code'));
        assert.deepEqual(jwtClaims(provider.tokens().access_token).scope.split(' ').sort(), ['mcp:connect', 'mcp:env']);

        const result = await call();
        assert.notEqual(result.isError, true, JSON.stringify(result));
        assert.match(result.content.map((c) => c.text ?? '').join('\n'), /PATH|NODE|HOME/);
      } finally {
        await client.close().catch(() => {});
      }
    });

    if (sdk.name === 'v1') {
      test('step-up with a refresh token: v1 refreshes instead of authorizing again, gets the same scopes, and gives up', async () => {
        // What the v1 client above avoids by keeping no refresh token: on the 403 it
        // refreshes (without `scope`), mcpgate keeps the grant's scopes (a refresh never
        // widens them), the retry gets the same 403, and the SDK stops.
        const provider = await newProvider('configured', { sdk });
        const { client } = await connectWithSignIn(sdk, provider);
        try {
          const refreshed = count('tokens refreshed');
          await assert.rejects(client.callTool({ name: 'get-env', arguments: {} }), /403 after trying upscoping/);
          assert.equal(count('tokens refreshed'), refreshed + 1);
          assert.equal(jwtClaims(provider.tokens().access_token).scope, 'mcp:connect');
          assert.equal(provider.authorizationUrls.length, 1, 'no new sign-in');
        } finally {
          await client.close().catch(() => {});
        }
      });
    }

    test('refresh: after the access token expired the SDK refreshes it and the call succeeds', async () => {
      const provider = await newProvider('configured', { sdk });
      const { client } = await connectWithSignIn(sdk, provider);
      try {
        await echo(client, 'before');
        const before = provider.tokens();
        const refreshedBefore = count('tokens refreshed');
        const expiredBefore = count('token has expired');
        await sleep(ACCESS_TOKEN_TTL_S * 1000 + 1200);
        // The gateway refuses the expired token (401 invalid_token); the SDK refreshes.
        await echo(client, 'after');
        const now = provider.tokens();
        assert.notEqual(now.access_token, before.access_token, 'a new access token');
        assert.notEqual(now.refresh_token, before.refresh_token, 'the refresh token rotated');
        assert.equal(count('tokens refreshed'), refreshedBefore + 1, 'the token endpoint saw one refresh_token grant');
        assert.equal(provider.authorizationUrls.length, 1, 'no new sign-in');
        assert.equal(count('token has expired'), expiredBefore + 1, 'the SDK sent the expired token once, and got a 401');
      } finally {
        await client.close().catch(() => {});
      }
    });

    test('revocation: the revoked access token is refused on the next call, and its refresh token too', async () => {
      const provider = await newProvider('configured', { sdk });
      const { client } = await connectWithSignIn(sdk, provider);
      try {
        await echo(client, 'before');
        const { access_token: token } = provider.tokens();
        const res = await fetch(`${gateway.origin}/oauth/revoke`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token', client_id: provider.clientId }),
        });
        assert.equal(res.status, 200, await res.text());

        // The SDK's next call: 401; its refresh is refused too (the grant is gone). Should
        // it start a new sign-in, this provider only records it.
        provider.interactive = false;
        const refused = 'request refused: invalid token: token has been revoked reason="revoked"';
        const refusedBefore = count(refused);
        const refreshRefusedBefore = count('refresh refused');
        await assert.rejects(echo(client, 'after'));
        assert.equal(count(refused), refusedBefore + 1, gateway.proc.output.slice(-2000));
        assert.ok(count('refresh refused') > refreshRefusedBefore, 'the SDK tried its refresh token, refused');
        // The same token on the wire: 401 invalid_token.
        const direct = await fetch(gateway.publicUrl, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
        });
        assert.equal(direct.status, 401);
        assert.match(direct.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      } finally {
        await client.close().catch(() => {});
      }
    });
  });
}
