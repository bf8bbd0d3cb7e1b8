// The official MCP Python SDK client (mcp 2.x, python/oauth_client.py in python/.venv,
// see python/setup.sh) doing the whole OAuth flow itself against mcpgate's
// authorization-server façade (issue #17) in front of server-everything: its own
// OAuthClientProvider (mcp.client.auth, on httpx2) gets mcpgate's 401, discovers mcpgate,
// registers (DCR) or uses its metadata document URL, and prints the authorization URL;
// this test drives Chromium through mcpgate's consent page and the identity provider's
// sign-in to the Python process's own loopback redirect URI; the SDK redeems the code and
// lists tools, calls echo, and on a 403 insufficient_scope authorizes again by itself;
// once its short-lived access token has expired it refreshes it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../lib/browser.mjs';
import { gatewayEnv } from '../lib/gateway.mjs';
import { startProcess } from '../lib/procs.mjs';
import { KIND_TEXT, clientDocument, jwtClaims, signInWithBrowser, startFacade } from '../lib/sdk-oauth.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON_DIR = path.join(here, '..', 'python');
const PYTHON = path.join(PYTHON_DIR, '.venv', 'bin', 'python');

const ACCESS_TOKEN_TTL_S = 3;

let facade;
let browser;

before(async () => {
  facade = await startFacade({ accessTokenTtl: `${ACCESS_TOKEN_TTL_S}s` });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await facade?.stop();
});

/**
 * Run python/oauth_client.py; sign in with the browser for each authorization URL it
 * prints. Returns { result (its last JSON line), signIns: [{ url, consentText, params }] }.
 */
async function runPython(args) {
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run tests/e2e/python/setup.sh (the MCP Python SDK client)`);
  const proc = startProcess('python', PYTHON, [path.join(PYTHON_DIR, 'oauth_client.py'), facade.gateway.publicUrl, ...args], {
    baseEnv: gatewayEnv(),
  });
  const signIns = [];
  const lines = [];
  const browsing = [];
  const reader = createInterface({ input: proc.child.stdout });
  reader.on('line', (line) => {
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      return;
    }
    lines.push(message);
    if (message.authorize) {
      const url = new URL(message.authorize);
      const redirectUri = url.searchParams.get('redirect_uri');
      browsing.push(
        signInWithBrowser(browser, { url: message.authorize, idp: facade.idp, redirectUri }).then(
          (signIn) => signIns.push({ url, ...signIn }),
          (err) => signIns.push({ url, error: err }),
        ),
      );
    }
  });
  const timer = setTimeout(() => proc.stop(), 90_000);
  const exit = await proc.exited;
  clearTimeout(timer);
  await Promise.all(browsing);
  const result = lines.at(-1);
  assert.ok(result && 'ok' in result, `no result from python (exit ${JSON.stringify(exit)}):\n${proc.output}`);
  assert.equal(result.ok, true, `python failed: ${result.type}: ${result.error}\n${proc.output}`);
  for (const signIn of signIns) assert.ifError(signIn.error);
  return { result, signIns };
}

test('Python SDK, registered client: signs in through the browser, calls echo, and steps up to mcp:env by itself', async (t) => {
  const started = performance.now();
  const { result, signIns } = await runPython(['--step-up']);
  assert.equal(signIns.length, 2, 'one sign-in, then one for the step-up');

  const [first, second] = signIns;
  assert.equal(`${first.url.origin}${first.url.pathname}`, `${facade.gateway.origin}/oauth/authorize`);
  assert.equal(first.url.searchParams.get('client_id'), result.clientId);
  assert.equal(first.url.searchParams.get('scope'), 'mcp:connect');
  assert.equal(first.url.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(first.consentText.includes('Python Notes'), first.consentText);
  assert.ok(first.consentText.includes(KIND_TEXT.dcr), first.consentText);
  assert.ok(!first.consentText.includes('mcp:env'), first.consentText);
  assert.equal(first.params.get('iss'), facade.gateway.origin);

  assert.deepEqual(second.url.searchParams.get('scope').split(' ').sort(), ['mcp:connect', 'mcp:env']);
  assert.ok(second.consentText.includes("Read the server's environment"), second.consentText);

  assert.ok(result.tools.includes('echo'), result.tools.join(', '));
  assert.ok(!result.tools.includes('get-env'), 'get-env is listed without mcp:env');
  assert.match(result.echo, /hello-python/);
  assert.equal(result.getEnv.isError, false, result.getEnv.text);
  assert.match(result.getEnv.text, /PATH|HOME|NODE/);

  // The first token, and the step-up's (a short-lived token may have been refreshed
  // in between).
  const before = jwtClaims(result.tokens[0]);
  const after = jwtClaims(result.tokens.at(-1));
  assert.equal(before.iss, facade.gateway.origin);
  assert.equal(before.aud, facade.gateway.publicUrl);
  assert.equal(before.client_id, result.clientId);
  assert.equal(before.scope, 'mcp:connect');
  assert.deepEqual(after.scope.split(' ').sort(), ['mcp:connect', 'mcp:env']);
  t.diagnostic(`python registered client with step-up: ${Math.round(performance.now() - started)} ms`);
});

test('Python SDK, metadata-document client: the consent page names the publishing host', async (t) => {
  const started = performance.now();
  const metadataUrl = facade.documents.serve('/clients/python.json', clientDocument('Python Published Notes'));
  const { result, signIns } = await runPython(['--metadata-url', metadataUrl]);
  assert.equal(signIns.length, 1);
  const [signIn] = signIns;
  assert.equal(signIn.url.searchParams.get('client_id'), metadataUrl);
  assert.ok(signIn.consentText.includes('Python Published Notes'), signIn.consentText);
  assert.ok(signIn.consentText.includes(KIND_TEXT.cimd), signIn.consentText);
  assert.ok(facade.documents.requests.includes('/clients/python.json'), 'mcpgate fetched the document');
  assert.match(result.echo, /hello-python/);
  assert.equal(jwtClaims(result.tokens[0]).client_id, metadataUrl);
  t.diagnostic(`python metadata-document client: ${Math.round(performance.now() - started)} ms`);
});

test('Python SDK: after the access token expired the SDK refreshes it and the call succeeds', async (t) => {
  const started = performance.now();
  const count = (text) => facade.gateway.proc.output.split(text).length - 1;
  const refreshed = count('tokens refreshed');
  const { result, signIns } = await runPython(['--pause', String(ACCESS_TOKEN_TTL_S + 1)]);
  assert.equal(signIns.length, 1, 'no second sign-in');
  assert.match(result.echo, /hello-python/);
  assert.match(result.echoAfterPause, /hello-again/);
  assert.ok(result.tokens.length >= 2, 'a second access token');
  assert.notEqual(result.tokens.at(-1), result.tokens[0]);
  assert.ok(count('tokens refreshed') > refreshed, 'the token endpoint saw a refresh_token grant');
  t.diagnostic(`python refresh: ${Math.round(performance.now() - started)} ms`);
});
