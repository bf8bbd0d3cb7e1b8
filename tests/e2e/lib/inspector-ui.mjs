// The MCP Inspector's built web UI (1.0.3), served as its own launcher
// (client/bin/client.js) serves it: the files of client/dist, and index.html for
// every other path (the UI's routes, /oauth/callback among them). Without the
// Inspector's proxy: the UI's "direct" connection type talks to the MCP server
// from the browser, which is what CORS is for.
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const DIST = path.join(path.dirname(require.resolve('@modelcontextprotocol/inspector/package.json')), 'client', 'dist');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

/** Starts the UI on a random loopback port; `origin` is http://localhost:<port>. */
export async function startInspectorUi() {
  const server = http.createServer(async (req, res) => {
    const wanted = path.normalize(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    let file = path.join(DIST, wanted);
    if (!file.startsWith(DIST) || !path.extname(file)) file = path.join(DIST, 'index.html');
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    origin: `http://localhost:${port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * A browser context whose Inspector UI remembers a direct Streamable HTTP connection
 * to `url`, with `headers` ([{ name, value }]) sent on it.
 */
export async function inspectorContext(browser, { url, headers = [] }) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.addInitScript(
    ({ url, headers }) => {
      // Only on the first load: the UI's own changes (after OAuth) must stick.
      if (localStorage.getItem('lastSseUrl') === url) return;
      localStorage.setItem('lastConnectionType', 'direct');
      localStorage.setItem('lastTransportType', 'streamable-http');
      localStorage.setItem('lastSseUrl', url);
      localStorage.setItem('lastCustomHeaders', JSON.stringify(headers.map((h) => ({ ...h, enabled: true }))));
    },
    { url, headers },
  );
  return context;
}

/** In the connected UI: list the tools, run echo with `message`, wait for its answer. */
export async function runEcho(page, message) {
  await page.getByRole('tab', { name: 'Tools' }).click();
  await page.getByRole('button', { name: 'List Tools' }).click();
  await page.getByText('Echo Tool', { exact: true }).first().click();
  await page.locator('textarea#message, input#message, [name="message"]').first().fill(message);
  await page.getByRole('button', { name: 'Run Tool' }).click();
  await page.getByText(`Echo: ${message}`).first().waitFor({ timeout: 15_000 });
}
