// @modelcontextprotocol/server-everything in Streamable HTTP mode: the real
// MCP server behind the gateway. It has no Host check and listens on all
// interfaces; tests only ever reach it through 127.0.0.1.
//
// `jsonResponse: true` runs the same server (server-everything's exported
// createServer()) behind the SDK transport with enableJsonResponse instead, so
// POSTs are answered with application/json rather than SSE; see
// lib/everything-json-server.mjs for why that needs its own entry point.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess, waitForPort } from './procs.mjs';

const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve('@modelcontextprotocol/server-everything/package.json'));
export const EVERYTHING_ENTRY = path.join(pkgDir, require(path.join(pkgDir, 'package.json')).bin['mcp-server-everything']);
export const EVERYTHING_JSON_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'everything-json-server.mjs');

export async function startEverything({ jsonResponse = false } = {}) {
  const port = await freePort();
  const proc = jsonResponse
    ? startProcess('everything-json', process.execPath, [EVERYTHING_JSON_ENTRY], { env: { PORT: String(port) } })
    : startProcess('everything', process.execPath, [EVERYTHING_ENTRY, 'streamableHttp'], { env: { PORT: String(port) } });
  await waitForPort(port, { proc });
  return { port, url: `http://127.0.0.1:${port}/mcp`, proc, stop: () => proc.stop() };
}
