// mcpgate as the authorization server MCP clients see (issue #17), in a real
// browser: Chromium opens mcpgate's authorization endpoint as a native MCP client
// would send it there, the user allows the client on mcpgate's consent page, signs
// in at a real OpenID provider (oidc-provider, registration off, mcpgate's own
// client registered in advance), and comes back through mcpgate's callback to the
// client's loopback redirect URI with an mcpgate code.
//
// UPDATE_SCREENSHOTS=1 rewrites docs/images/consent-page.png from the page shown.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { launchBrowser } from '../lib/browser.mjs';
import { REPO_ROOT, startGateway } from '../lib/gateway.mjs';
import { startIdentityProvider } from '../lib/idp.mjs';
import { startLoopbackClient } from '../lib/loopback-client.mjs';
import { freePort } from '../lib/procs.mjs';

const CLIENT = { clientId: 'e2e-notes', clientName: 'Notes Desktop' };
const SCREENSHOT = path.join(REPO_ROOT, 'docs', 'images', 'consent-page.png');

let idp;
let gateway;
let client;
let browser;

before(async () => {
  const gwPort = await freePort();
  idp = await startIdentityProvider({ redirectUri: `http://127.0.0.1:${gwPort}/oauth/callback` });
  client = await startLoopbackClient();
  gateway = await startGateway({
    gwPort,
    // Nothing here reaches the upstream: the sign-in ends before any MCP request.
    upstreamUrl: 'http://127.0.0.1:9/mcp',
    issuer: idp.issuer,
    scopesYaml: `scopes:
  initialize: [mcp:connect]
  tools:
    echo: [mcp:tools]
`,
    topExtra: `authorization_server:
  provider:
    issuer: ${idp.issuer}
    client_id: ${idp.client.clientId}
    client_secret: ${idp.client.clientSecret}
    scopes: [openid]
  clients:
    - client_id: ${CLIENT.clientId}
      client_name: ${CLIENT.clientName}
      redirect_uris: ["http://127.0.0.1/callback"]
  consent:
    server_name: Team tools
    scope_descriptions:
      mcp:connect: Connect to the Team tools MCP server
      mcp:tools: Run the server's tools
`,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
  await client?.close();
  await idp?.close();
});

/** The authorization request a native client sends the browser to, with PKCE. */
function authorizationRequest() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');
  const url = new URL(`${gateway.origin}/oauth/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT.clientId,
    redirect_uri: client.redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    scope: 'mcp:connect mcp:tools',
    resource: gateway.publicUrl,
  }).toString();
  return { url: url.toString(), verifier, state };
}

test('the identity provider does not let clients register themselves', async () => {
  const discovery = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
  assert.equal(discovery.issuer, idp.issuer);
  assert.equal(discovery.registration_endpoint, undefined);
  const facade = await (await fetch(`${gateway.origin}/.well-known/oauth-authorization-server`)).json();
  assert.equal(facade.issuer, gateway.origin);
  assert.equal(facade.authorization_endpoint, `${gateway.origin}/oauth/authorize`);
});

test('a browser signs in through the consent page and the identity provider and ends at the client with a code', async (t) => {
  const started = performance.now();
  const request = authorizationRequest();
  const page = await browser.newPage({ viewport: { width: 720, height: 520 } });
  const answer = client.next();

  await page.goto(request.url);
  assert.equal(new URL(page.url()).origin, gateway.origin);
  assert.equal(new URL(page.url()).pathname, '/oauth/consent');
  const text = await page.textContent('body');
  for (const shown of [CLIENT.clientName, 'Team tools', 'mcp:connect', 'mcp:tools', "Run the server's tools"]) {
    assert.ok(text.includes(shown), `the consent page shows ${shown}: ${text}`);
  }
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await writeFile(SCREENSHOT, await page.screenshot({ fullPage: true }));
    t.diagnostic(`wrote ${SCREENSHOT}`);
  }

  // Allow: mcpgate sends the browser to the provider with its own request.
  await Promise.all([page.waitForURL((url) => url.origin === idp.issuer), page.click('button[value="approve"]')]);

  // devInteractions' login page, then its consent page.
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'any password');
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  await page.waitForSelector('button[type="submit"]');
  await page.click('button[type="submit"]');

  // Back through mcpgate's callback to the client's loopback redirect URI.
  const params = await answer;
  await page.waitForURL((url) => url.toString().startsWith(client.redirectUri));
  assert.equal(params.get('error'), null, `error=${params.get('error')} ${params.get('error_description')}`);
  assert.match(params.get('code') ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.equal(params.get('state'), request.state);
  assert.equal(params.get('iss'), gateway.origin);

  // mcpgate redeemed the provider's code once, as its own confidential client, and
  // got an ID token.
  assert.equal(idp.issued.length, 1);
  assert.equal(idp.issued[0].clientId, idp.client.clientId);
  assert.equal(idp.issued[0].clientAuth, 'client_secret_basic');
  assert.equal(idp.issued[0].grantType, 'authorization_code');
  assert.ok(idp.issued[0].idToken, 'the provider issued an ID token');
  assert.ok(gateway.proc.output.includes('code issued'), 'mcpgate logged the sign-in');
  assert.ok(!gateway.proc.output.includes(idp.issued[0].idToken), 'the ID token is not logged');

  await page.close();
  t.diagnostic(`browser sign-in took ${Math.round(performance.now() - started)} ms`);
});
