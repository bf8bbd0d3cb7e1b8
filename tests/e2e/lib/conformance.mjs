// The differential conformance check: the MCP conformance suite (server mode) run
// once against server-everything directly and once through mcpgate. A gateway that
// is transparent for authorized traffic must not change which scenarios pass.
// Used by test/conformance.test.mjs (the single endpoint) and test/routes.test.mjs
// (a route's endpoint).
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UPSTREAM_CREDENTIAL } from './gateway.mjs';
import { assertUpstreamClean } from './mcp.mjs';
import { NODE22 } from './node22.mjs';
import { runProcess } from './procs.mjs';

const require = createRequire(import.meta.url);
const confDir = path.dirname(require.resolve('@modelcontextprotocol/conformance/package.json'));
const CONFORMANCE = path.join(confDir, require(path.join(confDir, 'package.json')).bin.conformance);
const INJECT_AUTH = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), 'inject-auth.mjs')).href;

// A full run takes ~2 s directly on 2 cores; the bound only stops a hang.
const RUN_TIMEOUT_MS = 180_000;

// dns-rebinding-protection sends its requests with undici's request(), not
// fetch, so the bearer preload cannot reach them: through mcpgate they get a
// 401 while directly they get 200. Its outcome differs for a reason that has
// nothing to do with transparency, so it is left out of the comparison.
const EXCLUDED = new Set(['dns-rebinding-protection']);

/** Run the suite against `url` with Node 22 first on PATH; -o makes it write checks.json per scenario. */
async function runConformance(url, outDir, env = {}) {
  const r = await runProcess(NODE22, [CONFORMANCE, 'server', '--url', url, '-o', outDir], {
    env: { PATH: `${path.dirname(NODE22)}:${process.env.PATH}`, ...env },
    timeoutMs: RUN_TIMEOUT_MS,
  });
  assert.equal(r.timedOut, false, `conformance against ${url} timed out`);
  assert.equal(r.signal, null, `conformance against ${url} died by ${r.signal}`);
  // Exit 1 just means some scenario failed (server-everything is not the
  // suite's reference server); anything else is a crash.
  assert.ok(r.code === 0 || r.code === 1, `conformance exit ${r.code}:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /=== SUMMARY ===/);
  return r;
}

/** scenario -> true when every check in its checks.json is SUCCESS. */
async function scenarioOutcomes(outDir) {
  const outcomes = new Map();
  for (const entry of await readdir(outDir)) {
    const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry);
    assert.ok(m, `unexpected entry in ${outDir}: ${entry}`);
    const checks = JSON.parse(await readFile(path.join(outDir, entry, 'checks.json'), 'utf8'));
    assert.ok(!outcomes.has(m[1]), `scenario ${m[1]} ran twice`);
    outcomes.set(m[1], checks.length > 0 && checks.every((c) => c.status === 'SUCCESS'));
  }
  return outcomes;
}

const passing = (outcomes) => [...outcomes].filter(([name, ok]) => ok && !EXCLUDED.has(name)).map(([n]) => n).sort();
const ran = (outcomes) => [...outcomes.keys()].filter((n) => !EXCLUDED.has(n)).sort();

/**
 * Run the suite against `directUrl` (server-everything) and against `gatewayUrl`
 * (mcpgate in front of it, through `recorder`) with `token` on every request, into
 * `workDir`/direct and `workDir`/gateway, and assert the same scenarios ran and the
 * same ones passed; `t` gets both lists as diagnostics. `recorder` must have seen the
 * gateway run (at least one request per scenario), always with mcpgate's own
 * credential and never the token. Returns the scenarios that passed.
 */
export async function compareConformance(t, { directUrl, gatewayUrl, token, recorder, workDir }) {
  const directDir = path.join(workDir, 'direct');
  const gatewayDir = path.join(workDir, 'gateway');

  await runConformance(directUrl, directDir);
  const direct = await scenarioOutcomes(directDir);

  const recorded = recorder.requests.length;
  await runConformance(gatewayUrl, gatewayDir, {
    MCP_BEARER: token,
    NODE_OPTIONS: `--import ${INJECT_AUTH}`,
  });
  const viaGateway = await scenarioOutcomes(gatewayDir);

  // Not vacuous: the direct run covers the whole active suite and the core
  // scenarios pass.
  const directPassing = passing(direct);
  assert.ok(ran(direct).length >= 25, `only ${ran(direct).length} scenarios ran directly`);
  for (const core of ['server-initialize', 'ping', 'tools-list', 'tools-call-simple-text']) {
    assert.ok(directPassing.includes(core), `${core} did not pass even directly: ${directPassing.join(', ')}`);
  }

  t.diagnostic(`passing directly (${directPassing.length}/${ran(direct).length}): ${directPassing.join(' ')}`);
  t.diagnostic(`passing via mcpgate: ${passing(viaGateway).join(' ')}`);
  assert.deepEqual(ran(viaGateway), ran(direct), 'the two runs did not run the same scenarios');
  assert.deepEqual(passing(viaGateway), directPassing);

  // The gateway run really went through mcpgate, with its credential and
  // without the client's token.
  assert.ok(recorder.requests.length - recorded >= ran(direct).length, 'too few upstream requests for a full run');
  assertUpstreamClean(recorder, { token, credential: UPSTREAM_CREDENTIAL });
  return directPassing;
}
