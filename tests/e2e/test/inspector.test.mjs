// MCP Inspector v1 CLI against mcpgate with a pre-obtained bearer token
// (--header), the way an operator debugs a protected server by hand.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { requestToken } from '../lib/as.mjs';
import { UPSTREAM_CREDENTIAL } from '../lib/gateway.mjs';
import { assertUpstreamClean } from '../lib/mcp.mjs';
import { NODE22 } from '../lib/node22.mjs';
import { runProcess } from '../lib/procs.mjs';
import { startStack } from '../lib/stack.mjs';

const require = createRequire(import.meta.url);
const inspectorDir = path.dirname(require.resolve('@modelcontextprotocol/inspector/package.json'));
// The package's own bin (cli/build/cli.js), run with Node 22 (Inspector
// requires >= 22.7.5). No npx: nothing may come from the network at test time.
const INSPECTOR = path.join(inspectorDir, require(path.join(inspectorDir, 'package.json')).bin['mcp-inspector']);

function inspector(url, args) {
  return runProcess(NODE22, [INSPECTOR, '--cli', url, '--transport', 'http', ...args], { timeoutMs: 60_000 });
}

describe('Inspector CLI through mcpgate', () => {
  let stack;
  let token;
  before(async () => {
    stack = await startStack();
    ({ access_token: token } = await requestToken(stack.as, { scope: 'mcp:connect', resource: stack.publicUrl }));
  });
  after(async () => {
    await stack?.stop();
  });

  /**
   * The Inspector CLI with `args`, and what the upstream saw meanwhile: at least
   * one request, each with the gateway's credential and never the token.
   */
  async function inspectorThroughGateway(args) {
    const before = stack.recorder.requests.length;
    const r = await inspector(stack.publicUrl, args);
    assert.equal(r.code, 0, `inspector failed:\n${r.stdout}\n${r.stderr}`);
    assertUpstreamClean({ requests: stack.recorder.requests.slice(before) }, { token, credential: UPSTREAM_CREDENTIAL });
    return r;
  }

  test('tools/list with a bearer header lists echo; the upstream sees the gateway credential, never the token', async () => {
    const r = await inspectorThroughGateway(['--method', 'tools/list', '--header', `Authorization: Bearer ${token}`]);
    const names = JSON.parse(r.stdout).tools.map((t) => t.name);
    assert.ok(names.includes('echo'), names.join(', '));
  });

  test('tools/call echo with a bearer header returns the message; the upstream sees the gateway credential, never the token', async () => {
    const r = await inspectorThroughGateway([
      '--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'message=hi',
      '--header', `Authorization: Bearer ${token}`,
    ]);
    const { content } = JSON.parse(r.stdout);
    assert.match(content.map((c) => c.text ?? '').join('\n'), /\bhi\b/);
  });

  test('without a token the CLI fails and nothing reaches the upstream', async () => {
    const before = stack.recorder.requests.length;
    const r = await inspector(stack.publicUrl, ['--method', 'tools/list']);
    assert.notEqual(r.code, 0, `inspector unexpectedly succeeded:\n${r.stdout}`);
    assert.doesNotMatch(r.stdout, /"echo"/);
    assert.equal(stack.recorder.requests.length, before);
  });
});
