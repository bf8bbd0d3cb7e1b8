// Writes an mcpgate config file and runs `mcpgate serve` against it.
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, waitForHttp, waitForOutput } from './procs.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
export const MCPGATE_BIN = process.env.MCPGATE_BIN || path.join(REPO_ROOT, 'target', 'debug', 'mcpgate');

export const UPSTREAM_CREDENTIAL = { name: 'X-Upstream-Credential', value: 'gateway-own-secret' };

/**
 * The environment for mcpgate children: ours minus everything mcpgate reads
 * as configuration (MCPGATE_* overrides, MCP_OAUTH_* aliases), so the config
 * file written by the test is the only source, whatever the caller's shell
 * exports.
 */
export function gatewayEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('MCPGATE_') && !k.startsWith('MCP_OAUTH_')),
  );
}

export function assertBinaryExists() {
  if (!existsSync(MCPGATE_BIN)) {
    throw new Error(`mcpgate binary not found at ${MCPGATE_BIN}: run \`cargo build\` in ${REPO_ROOT} or set MCPGATE_BIN`);
  }
}

/** The `scopes:` block every gateway gets unless a test passes its own `scopesYaml`. */
export const DEFAULT_SCOPES_YAML = `scopes:
  initialize: [mcp:connect]
`;

/**
 * The contract config from DESIGN §3, reduced to what the e2e suite needs.
 * `jwks` adds keys to the one jwks entry (default refresh_interval: 1m);
 * `jwksUrl` replaces <issuer>/jwks (e.g. to tag one gateway's fetches with a query);
 * `oauthExtra` is YAML appended under auth.oauth, indented by 4 spaces;
 * `serverExtra` is YAML appended under server, indented by 2 spaces (e.g.
 * `  admin_listen: 127.0.0.1:9090\n`);
 * `upstreamExtra` is YAML appended under upstream, indented by 2 spaces (e.g. an
 * `  oauth:` block), ending with a newline;
 * `upstreamYaml` replaces the whole top-level `upstream:` block (url, headers and
 * `upstreamExtra`), key line included, ending with a newline: e.g. a stdio
 * upstream (`command:`), which has no url (`upstreamUrl` is then unused);
 * `scopesYaml` replaces the whole top-level `scopes:` block (DEFAULT_SCOPES_YAML),
 * key line included, ending with a newline;
 * `topExtra` is top-level YAML appended at the end (e.g. an `audit:` block),
 * ending with a newline.
 */
export function gatewayConfigYaml({
  gwPort,
  upstreamUrl,
  issuer,
  jwks = {},
  jwksUrl = `${issuer}/jwks`,
  oauthExtra = '',
  serverExtra = '',
  upstreamExtra = '',
  upstreamYaml,
  scopesYaml = DEFAULT_SCOPES_YAML,
  topExtra = '',
}) {
  const jwksLines = Object.entries({ refresh_interval: '1m', ...jwks })
    .map(([k, v]) => `        ${k}: ${v}\n`)
    .join('');
  return `# written by tests/e2e/lib/gateway.mjs
server:
  listen: 127.0.0.1:${gwPort}
  public_url: http://127.0.0.1:${gwPort}/mcp
${serverExtra}${upstreamYaml ?? `upstream:
  url: ${upstreamUrl}
  headers: { ${UPSTREAM_CREDENTIAL.name}: "${UPSTREAM_CREDENTIAL.value}" }
${upstreamExtra}`}auth:
  oauth:
    enabled: true
    authorization_servers: [${issuer}]
    issuers: [${issuer}]
    jwks:
      - url: ${jwksUrl}
        algorithms: [RS256]
${jwksLines}${oauthExtra}${scopesYaml}${topExtra}`;
}

/** Write `yaml` to mcpgate.yaml in a fresh temp dir; returns { dir, configPath }. */
export async function writeConfig(yaml) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-e2e-'));
  const configPath = path.join(dir, 'mcpgate.yaml');
  await writeFile(configPath, yaml);
  return { dir, configPath };
}

/**
 * `env` adds variables to mcpgate's environment (e.g. SSL_CERT_FILE). `configYaml`
 * is the whole file instead of gatewayConfigYaml()'s (e.g. one with `routes:`, which
 * has no `server.public_url`); it must listen on 127.0.0.1:`gwPort`.
 */
export async function startGateway({
  gwPort,
  configYaml,
  upstreamUrl,
  issuer,
  jwks,
  jwksUrl,
  oauthExtra,
  serverExtra,
  upstreamExtra,
  upstreamYaml,
  scopesYaml,
  topExtra,
  env = {},
}) {
  assertBinaryExists();
  const yaml =
    configYaml ??
    gatewayConfigYaml({
      gwPort,
      upstreamUrl,
      issuer,
      jwks,
      jwksUrl,
      oauthExtra,
      serverExtra,
      upstreamExtra,
      upstreamYaml,
      scopesYaml,
      topExtra,
    });
  const { dir, configPath } = await writeConfig(yaml);
  const proc = startProcess('mcpgate', MCPGATE_BIN, ['serve', '--config', configPath], {
    baseEnv: gatewayEnv(),
    env: { RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
  });
  const origin = `http://127.0.0.1:${gwPort}`;
  const stop = async () => {
    await proc.stop();
    await rm(dir, { recursive: true, force: true });
  };
  // Ready = the unauthenticated metadata URL answers at all. Its content is
  // asserted by wire.test.mjs; a wrong status here should fail there with a
  // clear message, not time out here.
  try {
    // The port was reserved by closing a socket on it, so another process of the
    // stack (the recorder, server-everything) can have been given it since. Only
    // mcpgate's own "listening" line proves that what answers there is this
    // gateway; without it a test could talk to the upstream with no gateway at all.
    await waitForOutput(proc, `listening on 127.0.0.1:${gwPort},`, { timeoutMs: 30_000 });
    await waitForHttp(`${origin}/.well-known/oauth-protected-resource`, { proc, timeoutMs: 30_000, accept: () => true });
  } catch (err) {
    await stop(); // no stack entry exists yet to clean up after us
    throw err;
  }
  return {
    origin,
    publicUrl: `${origin}/mcp`,
    metadataUrl: `${origin}/.well-known/oauth-protected-resource/mcp`,
    configPath,
    proc,
    stop,
  };
}
