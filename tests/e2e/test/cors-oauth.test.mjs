// The MCP Inspector's web UI (1.0.3) signing in through mcpgate's authorization
// server from the page (issue #18): served from http://localhost:<port>, it connects
// to mcpgate (http://127.0.0.1:<port>) directly from Chromium with no token, reads
// the 401's challenge, fetches the RFC 9728 and RFC 8414 documents, registers itself
// (DCR), sends the browser to mcpgate's consent page and the identity provider
// (oidc-provider), and back on its own /oauth/callback redeems the code at
// /oauth/token: every one of those calls is a cross-origin fetch that needs CORS.
// Then it runs server-everything's echo with the token it got.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from '../lib/browser.mjs';
import { inspectorContext, runEcho, startInspectorUi } from '../lib/inspector-ui.mjs';
import { jwtClaims, startFacade } from '../lib/sdk-oauth.mjs';

let facade;
let inspectorUi;
let browser;

before(async () => {
  facade = await startFacade({
    accessTokenTtl: '5m',
    serverExtra: `  cors:
    allowed_origins: ["http://localhost:*"]
`,
  });
  inspectorUi = await startInspectorUi();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await inspectorUi?.close();
  await facade?.stop();
});

test("the Inspector's web UI signs in through mcpgate's authorization server from the page and runs echo", async (t) => {
  const { gateway, idp } = facade;
  const context = await inspectorContext(browser, { url: gateway.publicUrl });
  const page = await context.newPage();
  const fromPage = [];
  page.on('requestfinished', async (request) => {
    const url = new URL(request.url());
    if (url.origin === gateway.origin && request.resourceType() === 'fetch') {
      fromPage.push(`${request.method()} ${url.pathname} ${(await request.response())?.status()}`);
    }
  });
  try {
    await page.goto(`${inspectorUi.origin}/`);
    // No token: the 401 starts the UI's OAuth flow, which navigates this tab to
    // mcpgate's authorization endpoint.
    await Promise.all([
      page.waitForURL((url) => url.origin === gateway.origin && url.pathname === '/oauth/consent', { timeout: 30_000 }),
      page.getByRole('button', { name: 'Connect', exact: true }).click(),
    ]);
    assert.match(await page.textContent('body'), /registered itself with this server/);
    await Promise.all([page.waitForURL((url) => url.origin === idp.issuer), page.click('button[value="approve"]')]);
    await page.waitForSelector('input[name="login"]');
    await page.fill('input[name="login"]', 'alice');
    await page.fill('input[name="password"]', 'any password');
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
    await page.waitForSelector('button[type="submit"]');
    await page.click('button[type="submit"]');
    // Back at the UI's callback, which redeems the code and reconnects.
    await page.waitForURL((url) => url.origin === inspectorUi.origin, { timeout: 30_000 });
    await page.getByText('Connected', { exact: true }).waitFor({ timeout: 30_000 });
    await runEcho(page, 'signed in from the page');
  } catch (error) {
    t.diagnostic(`fetches from the page: ${JSON.stringify(fromPage)}`);
    if (process.env.CORS_SCREENSHOT) await page.screenshot({ path: process.env.CORS_SCREENSHOT, fullPage: true });
    throw error;
  }
  // The steps the page took itself, each one cross-origin.
  for (const step of [
    'POST /oauth/register 201',
    'POST /oauth/token 200',
  ]) {
    assert.ok(fromPage.includes(step), `${step} in ${JSON.stringify(fromPage)}`);
  }
  assert.ok(fromPage.some((step) => step.startsWith('GET /.well-known/oauth-authorization-server')), JSON.stringify(fromPage));
  assert.ok(fromPage.some((step) => step.startsWith('POST /mcp 401')), JSON.stringify(fromPage));
  // The token the UI holds is mcpgate's, for alice.
  const stored = await page.evaluate(() =>
    Object.keys(sessionStorage)
      .filter((key) => key.includes('tokens'))
      .map((key) => JSON.parse(sessionStorage.getItem(key)).access_token),
  );
  await context.close();
  assert.equal(stored.length, 1, 'one stored token');
  const claims = jwtClaims(stored[0]);
  assert.equal(claims.iss, gateway.origin);
  assert.equal(claims.sub, 'alice');
});
