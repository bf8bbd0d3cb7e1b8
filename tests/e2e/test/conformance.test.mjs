// Differential conformance: the MCP conformance suite (server mode) run once
// against server-everything directly and once through mcpgate. A gateway that
// is transparent for authorized traffic must not change which scenarios pass.
import { after, before, test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { requestToken } from '../lib/as.mjs';
import { compareConformance } from '../lib/conformance.mjs';
import { startStack } from '../lib/stack.mjs';

let stack;
let workDir;
before(async () => {
  stack = await startStack();
  workDir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-conformance-'));
});
after(async () => {
  await stack?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

test('conformance results are identical directly and through mcpgate', async (t) => {
  // One token for the whole gateway run; the AS's 300 s lifetime is far
  // longer than the run.
  const { access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl });
  await compareConformance(t, {
    directUrl: stack.everything.url,
    gatewayUrl: stack.gateway.publicUrl,
    token,
    recorder: stack.recorder,
    workDir,
  });
});
