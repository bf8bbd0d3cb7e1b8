// @modelcontextprotocol/server-everything in Streamable HTTP mode: the real
// MCP server behind the gateway. It has no Host check and listens on all
// interfaces; tests only ever reach it through 127.0.0.1.
import { createRequire } from 'node:module';
import path from 'node:path';
import { freePort, startProcess, waitForPort } from './procs.mjs';

const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve('@modelcontextprotocol/server-everything/package.json'));
export const EVERYTHING_ENTRY = path.join(pkgDir, require(path.join(pkgDir, 'package.json')).bin['mcp-server-everything']);

export async function startEverything() {
  const port = await freePort();
  const proc = startProcess('everything', process.execPath, [EVERYTHING_ENTRY, 'streamableHttp'], {
    env: { PORT: String(port) },
  });
  await waitForPort(port, { proc });
  return { port, url: `http://127.0.0.1:${port}/mcp`, proc, stop: () => proc.stop() };
}
