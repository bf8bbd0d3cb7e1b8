// Per-user connections to a third-party service (`upstream.identity.connection`,
// issue #19 part 4) with real peers: the TypeScript SDK client (1.x, MCP
// 2025-11-25) calls a tool that needs the user's own account and gets the
// `-32042` URL elicitation; Chromium opens the link, signs in at the identity
// provider that issues the callers' tokens (oidc-provider), then authorizes
// mcpgate at the third-party service (a second oidc-provider standing in for
// GitHub); the retried call reaches server-everything (behind the recorder) with
// the service's token, never the caller's.
//
// The caller's access token is minted here with the identity provider's own
// signing key (iss = the provider, sub = alice, aud = mcpgate): the provider of
// lib/idp.mjs issues ID tokens for mcpgate's sign-in, not access tokens for the
// MCP resource. mcpgate verifies it against the provider's real JWKS.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT, importJWK } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import { launchBrowser } from '../lib/browser.mjs';
import { startEverything } from '../lib/everything.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { startIdentityProvider } from '../lib/idp.mjs';
import { freePort } from '../lib/procs.mjs';
import { startRecorder } from '../lib/recorder.mjs';

let idp;
let service;
let everything;
let recorder;
let gateway;
let browser;

before(async () => {
  const gwPort = await freePort();
  const callback = `http://127.0.0.1:${gwPort}/connect/github/callback`;
  idp = await startIdentityProvider({ redirectUri: callback });
  service = await startIdentityProvider({ redirectUri: callback });
  const endpoints = await (await fetch(`${service.issuer}/.well-known/openid-configuration`)).json();
  everything = await startEverything();
  recorder = await startRecorder({ targetPort: everything.port });
  gateway = await startGateway({
    gwPort,
    upstreamUrl: recorder.url,
    issuer: idp.issuer,
    upstreamExtra: `  identity:
    connection:
      name: github
      tools: [echo]
      provider:
        issuer: ${service.issuer}
        authorization_endpoint: ${endpoints.authorization_endpoint}
        token_endpoint: ${endpoints.token_endpoint}
        client_id: ${service.client.clientId}
        client_secret: ${service.client.clientSecret}
        scopes: [openid]
      sign_in:
        issuer: ${idp.issuer}
        client_id: ${idp.client.clientId}
        client_secret: ${idp.client.clientSecret}
        scopes: [openid]
`,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
  await recorder?.stop();
  await everything?.stop();
  await service?.close();
  await idp?.close();
});

/** An access token as the identity provider would issue it for mcpgate. */
async function callerToken(subject) {
  const key = await importJWK(idp.signingKey, 'RS256');
  return new SignJWT({ scope: 'mcp:connect mcp:tools mcp:admin', client_id: 'e2e-client' })
    .setProtectedHeader({ alg: 'RS256', kid: idp.signingKey.kid, typ: 'at+jwt' })
    .setIssuer(idp.issuer)
    .setSubject(subject)
    .setAudience(gateway.publicUrl)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(key);
}

/** devInteractions' login page, then its consent page, as `login`. */
async function signInAt(page, origin, login) {
  await page.waitForURL((url) => url.origin === origin);
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any password');
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  await page.waitForSelector('button[type="submit"]');
  await page.click('button[type="submit"]');
}

test('the SDK client gets a URL elicitation, a browser connects the account, and the retry carries the service token upstream', async (t) => {
  const token = await callerToken('alice');
  const transport = new StreamableHTTPClientTransport(new URL(gateway.publicUrl), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'mcpgate-e2e-connections', version: '0.0.0' });
  await client.connect(transport);
  try {
    // Not connected: the URL elicitation, and no tools/call upstream.
    const before = recorder.requests.length;
    const error = await client.callTool({ name: 'echo', arguments: { message: 'hi' } }).then(
      () => assert.fail('the call went through without a connection'),
      (err) => err,
    );
    assert.ok(error instanceof UrlElicitationRequiredError, String(error));
    const [elicitation] = error.elicitations;
    assert.equal(elicitation.mode, 'url');
    assert.ok(elicitation.elicitationId);
    const link = new URL(elicitation.url);
    assert.equal(link.origin, gateway.origin);
    assert.equal(link.pathname, '/connect/github');
    assert.ok(
      !recorder.requests.slice(before).some((r) => r.body.includes('"tools/call"')),
      'a tools/call reached the upstream without a connection',
    );

    // The browser: sign in at the identity provider as alice, then at the service.
    const started = performance.now();
    const page = await browser.newPage();
    await page.goto(elicitation.url);
    await signInAt(page, idp.issuer, 'alice');
    await signInAt(page, service.issuer, 'alice-at-github');
    await page.waitForURL((url) => url.origin === gateway.origin && url.pathname === '/connect/github/callback');
    const shown = await page.textContent('body');
    assert.match(shown, /connected/i, shown);
    t.diagnostic(`browser connect flow took ${Math.round(performance.now() - started)} ms`);
    await page.close();

    // mcpgate redeemed both codes as its own confidential client.
    assert.equal(idp.issued.length, 1);
    assert.ok(idp.issued[0].idToken, 'the sign-in gave an ID token');
    assert.equal(service.issued.length, 1);
    const serviceToken = service.issued[0].accessToken;
    assert.ok(serviceToken, 'the service issued an access token');

    // The retry goes through, with the service's token upstream.
    const result = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
    assert.notEqual(result.isError, true, JSON.stringify(result));
    assert.match(result.content.map((c) => c.text).join('\n'), /\bhi\b/);
    const calls = recorder.requests.filter((r) => r.method === 'POST' && r.body.includes('"tools/call"'));
    assert.equal(calls.length, 1, 'one tools/call reached the upstream');
    assert.equal(calls[0].headers.authorization, `Bearer ${serviceToken}`);
    for (const r of recorder.requests) {
      for (const [name, value] of Object.entries(r.headers)) {
        assert.ok(!String(value).includes(token), `the upstream saw the caller's token in ${name}`);
      }
    }
    assert.ok(!gateway.proc.output.includes(serviceToken), 'the service token is not logged');
  } finally {
    await client.close().catch(() => {});
  }
});
