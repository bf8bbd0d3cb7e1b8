// CORS in a real browser (issue #18): Debian's Chromium, driven by playwright-core,
// loads a page from one loopback origin (http://localhost:<port>) whose script
// talks to mcpgate on another (http://127.0.0.1:<port>) with `fetch`, as a browser
// MCP client does: the preflight, the 401 whose `WWW-Authenticate` it reads, the
// metadata document, initialize with a bearer token, the `Mcp-Session-Id` it
// reads, and a tools/call of server-everything's `echo`. The same page served from
// an origin that `server.cors` does not list is refused by the browser, and the
// upstream sees nothing of it. Then the MCP Inspector's web UI (1.0.3), served from
// its own loopback origin, connects to mcpgate directly from the browser (its
// "direct" connection type, no Inspector proxy) with a bearer header and runs echo.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { requestToken } from '../lib/as.mjs';
import { launchBrowser } from '../lib/browser.mjs';
import { inspectorContext, runEcho, startInspectorUi } from '../lib/inspector-ui.mjs';
import { startStack } from '../lib/stack.mjs';

let stack;
let browser;
let pageServer;
let pagePort;
let inspectorUi;
let token;

before(async () => {
  stack = await startStack({
    gatewayOptions: () => ({
      serverExtra: `  cors:
    allowed_origins: ["http://localhost:*"]
    max_age: 1m
`,
    }),
  });
  // The page's own server: one empty HTML document on every path.
  pageServer = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>browser MCP client</title><p>client</p>');
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pagePort = pageServer.address().port;
  inspectorUi = await startInspectorUi();
  ({ access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl }));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (pageServer ? pageServer.close(resolve) : resolve()));
  await inspectorUi?.close();
  await stack?.stop();
});

/** Opens the page at `origin` and records the preflights Chromium sends. */
async function openPage(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  const preflights = [];
  await cdp.send('Network.enable');
  cdp.on('Network.requestWillBeSent', (event) => {
    if (event.request.method === 'OPTIONS') preflights.push(event.request.url);
  });
  await page.goto(`${origin}/`);
  return { context, page, preflights };
}

/**
 * Runs in the page: what a browser MCP client does against `mcp`. Every step's
 * outcome is returned for the test to check (a thrown error becomes `error`).
 */
async function browserClient({ mcp, token }) {
  const seen = {};
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'page', version: '1' } },
  };
  /** The JSON-RPC answer in a JSON or SSE body. */
  const answer = async (response) => {
    const text = await response.text();
    if ((response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      const data = text
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => JSON.parse(line.slice(5)));
      return data.find((message) => message.id !== undefined);
    }
    return JSON.parse(text);
  };
  try {
    const refused = await fetch(mcp, { method: 'POST', headers, body: JSON.stringify(initialize) });
    seen.unauthenticated = { status: refused.status, challenge: refused.headers.get('www-authenticate') };
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(seen.unauthenticated.challenge ?? '')?.[1];
    const metadata = await (await fetch(metadataUrl, { headers: { 'mcp-protocol-version': '2025-06-18' } })).json();
    seen.metadata = { resource: metadata.resource, authorizationServers: metadata.authorization_servers };

    const authorized = { ...headers, authorization: `Bearer ${token}` };
    const init = await fetch(mcp, { method: 'POST', headers: authorized, body: JSON.stringify(initialize) });
    const session = init.headers.get('mcp-session-id');
    const initAnswer = await answer(init);
    seen.initialize = { status: init.status, session, version: initAnswer?.result?.protocolVersion };
    const inSession = { ...authorized, 'mcp-session-id': session, 'mcp-protocol-version': initAnswer.result.protocolVersion };
    const initialized = await fetch(mcp, {
      method: 'POST',
      headers: inSession,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    seen.initialized = initialized.status;
    const call = await fetch(mcp, {
      method: 'POST',
      headers: inSession,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'echo', arguments: { message: 'hello from the page' } },
      }),
    });
    seen.call = { status: call.status, result: (await answer(call))?.result };
  } catch (error) {
    seen.error = String(error);
  }
  return seen;
}

test('a page on an allowed origin runs an MCP session through mcpgate with fetch', async () => {
  const origin = `http://localhost:${pagePort}`;
  const { context, page, preflights } = await openPage(origin);
  try {
    const seen = await page.evaluate(browserClient, { mcp: stack.publicUrl, token });
    assert.equal(seen.error, undefined, seen.error);
    // The 401's challenge is readable (Access-Control-Expose-Headers).
    assert.equal(seen.unauthenticated.status, 401);
    assert.match(seen.unauthenticated.challenge ?? '', /^Bearer .*resource_metadata="/);
    assert.equal(seen.metadata.resource, stack.publicUrl);
    assert.deepEqual(seen.metadata.authorizationServers, [stack.as.issuer]);
    // The session id is readable, and the page sends it back.
    assert.equal(seen.initialize.status, 200);
    assert.match(seen.initialize.session ?? '', /.{16,}/);
    assert.equal(seen.initialized, 202);
    assert.equal(seen.call.status, 200);
    assert.deepEqual(seen.call.result.content, [{ type: 'text', text: 'Echo: hello from the page' }]);
    // Chromium asked before its first POST (authorization and JSON are not simple).
    assert.ok(
      preflights.some((url) => url === stack.publicUrl),
      `a preflight to the MCP endpoint: ${JSON.stringify(preflights)}`,
    );
    // Preflights end at mcpgate: the upstream saw POSTs only, never the page's token.
    const upstreamSaw = stack.recorder.requests.map((request) => request.method);
    assert.ok(upstreamSaw.length >= 3, JSON.stringify(upstreamSaw));
    assert.ok(
      upstreamSaw.every((method) => method === 'POST'),
      JSON.stringify(upstreamSaw),
    );
    assert.ok(stack.recorder.requests.every((request) => request.headers.authorization === undefined));
  } finally {
    await context.close();
  }
});

test('a page on an origin server.cors does not list is refused by the browser and reaches nothing', async () => {
  // The same page server under another host name: a different origin.
  const origin = `http://127.0.0.1:${pagePort}`;
  const before = stack.recorder.requests.length;
  const { context, page } = await openPage(origin);
  try {
    const seen = await page.evaluate(browserClient, { mcp: stack.publicUrl, token });
    assert.match(seen.error ?? '', /TypeError: Failed to fetch/);
    assert.equal(seen.unauthenticated, undefined, 'the first fetch already failed');
    assert.equal(stack.recorder.requests.length, before, 'the upstream saw nothing');
    // What the browser was told: the Origin check's 403, no CORS headers.
    const response = await fetch(stack.publicUrl, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST' },
    });
    assert.equal(response.status, 403);
    assert.equal(response.headers.get('access-control-allow-origin'), null);
  } finally {
    await context.close();
  }
});

test("the MCP Inspector's web UI connects to mcpgate directly from the browser and runs echo", async (t) => {
  const context = await inspectorContext(browser, {
    url: stack.publicUrl,
    headers: [{ name: 'Authorization', value: `Bearer ${token}` }],
  });
  const page = await context.newPage();
  const before = stack.recorder.requests.length;
  try {
    await page.goto(`${inspectorUi.origin}/`);
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await page.getByText('Connected', { exact: true }).waitFor({ timeout: 15_000 });
    await runEcho(page, 'hi from the Inspector');
  } catch (error) {
    if (process.env.CORS_SCREENSHOT) await page.screenshot({ path: process.env.CORS_SCREENSHOT, fullPage: true });
    throw error;
  } finally {
    await context.close();
  }
  const calls = stack.recorder.requests.slice(before).map((request) => JSON.parse(request.body || '{}').method);
  assert.ok(calls.includes('initialize') && calls.includes('tools/call'), JSON.stringify(calls));
});
