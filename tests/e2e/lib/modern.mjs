// Starts lib/modern-server.mjs (the 2026-07-28 test server built with the
// TypeScript v2 server SDK) on a free loopback port.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess, waitForPort } from './procs.mjs';

export const MODERN_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'modern-server.mjs');
/** The ttlMs the server puts on tools/list, resources/list and server/discover (cacheScope "public"). */
export const MODERN_TTL_MS = 60_000;
/** Its two resources: `touch` updates both, in this order. */
export const MODERN_RESOURCES = { public: 'mem://public/a', secret: 'mem://secret/b' };

export async function startModern() {
  const port = await freePort();
  const proc = startProcess('modern', process.execPath, [MODERN_ENTRY], { env: { PORT: String(port) } });
  await waitForPort(port, { proc });
  return { port, url: `http://127.0.0.1:${port}/mcp`, proc, stop: () => proc.stop() };
}
