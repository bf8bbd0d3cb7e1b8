// The redirect URI of a native MCP client (RFC 8252 §7.3): a loopback HTTP
// listener that waits for the authorization response and shows a plain page.
import http from 'node:http';

/**
 * Listen on 127.0.0.1 at a random port. Returns { redirectUri, next(), close() }:
 * `next()` resolves with the next request's query parameters at `/callback`
 * (a URLSearchParams).
 */
export async function startLoopbackClient() {
  const waiting = [];
  const received = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Signed in</title><p>You can close this window.</p>');
    const resolve = waiting.shift();
    if (resolve) resolve(url.searchParams);
    else received.push(url.searchParams);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    redirectUri: `http://127.0.0.1:${server.address().port}/callback`,
    next: () =>
      received.length > 0 ? Promise.resolve(received.shift()) : new Promise((resolve) => waiting.push(resolve)),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
