// `mcpgate check --config F`: exit 0 for a valid file, exit 78 (EX_CONFIG)
// with a line naming the offending key otherwise (DESIGN §3/§4).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { startAuthServer } from '../lib/as.mjs';
import { MCPGATE_BIN, assertBinaryExists, gatewayConfigYaml, gatewayEnv, writeConfig } from '../lib/gateway.mjs';
import { freePort, runProcess } from '../lib/procs.mjs';

let as;
let gwPort;
const dirs = [];

async function check(yaml) {
  const { dir, configPath } = await writeConfig(yaml);
  dirs.push(dir);
  return runProcess(MCPGATE_BIN, ['check', '--config', configPath], { timeoutMs: 30_000, baseEnv: gatewayEnv() });
}

before(async () => {
  assertBinaryExists();
  gwPort = await freePort();
  // A live AS, in case `check` fetches the JWKS like `serve` does at start.
  as = await startAuthServer({ resource: `http://127.0.0.1:${gwPort}/mcp` });
});
after(async () => {
  await as?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const validYaml = () => gatewayConfigYaml({ gwPort, upstreamUrl: 'http://127.0.0.1:9/mcp', issuer: as.issuer });

test('the e2e config itself passes check', async () => {
  const r = await check(validYaml());
  assert.equal(r.code, 0, `check failed:\n${r.stdout}\n${r.stderr}`);
});

test('an unknown key exits 78 and names the key', async () => {
  const r = await check(validYaml().replace('  listen:', '  lisen:'));
  assert.equal(r.code, 78, `expected EX_CONFIG:\n${r.stdout}\n${r.stderr}`);
  assert.match(`${r.stdout}\n${r.stderr}`, /lisen/);
});

test('OAuth enabled without jwks or introspection exits 78 and names auth.oauth', async () => {
  const yaml = validYaml().replace(/    jwks:\n(?:      .*\n|        .*\n)+/, '');
  assert.doesNotMatch(yaml, /jwks/, 'test bug: jwks block not removed');
  const r = await check(yaml);
  assert.equal(r.code, 78, `expected EX_CONFIG:\n${r.stdout}\n${r.stderr}`);
  assert.match(`${r.stdout}\n${r.stderr}`, /auth\.oauth/);
});
