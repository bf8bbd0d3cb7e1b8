// What the tests of one mcpgate with several routes share (test/routes and
// test/virtual): the YAML of each kind of upstream they put behind a route,
// SDK clients of both majors that find a route from its 401, the audit log, and
// a configuration reload by SIGHUP.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider as ProviderV1 } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import {
  Client as ClientV2,
  ClientCredentialsProvider as ProviderV2,
  StreamableHTTPClientTransport as TransportV2,
} from '@modelcontextprotocol/client';
import { M2M } from './as.mjs';
import { REPO_ROOT, UPSTREAM_CREDENTIAL } from './gateway.mjs';
import { loggingFetch } from './logging-fetch.mjs';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const EVERYTHING_BIN = path.join(E2E_DIR, 'node_modules', '.bin', 'mcp-server-everything');
export const GRAPHQL_EXAMPLE = path.join(REPO_ROOT, 'examples', 'graphql');
/** What mcpgate sends the GraphQL API (`upstream.graphql.headers`). */
export const API_CREDENTIAL = 'Bearer the-graphql-apis-own-key';

export const SDKS = {
  v1: { Client: ClientV1, Transport: TransportV1, Provider: ProviderV1 },
  v2: { Client: ClientV2, Transport: TransportV2, Provider: ProviderV2 },
};

export const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/**
 * A stdio child's whole environment: the launcher needs `node` on PATH, and
 * MCPGATE_E2E_ROUTE tells which route started it (its get-env tool shows it).
 */
export function childEnv(route) {
  return {
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`,
    MCPGATE_E2E_ROUTE: route,
  };
}

/** `upstream:` (the value, inline) for a Streamable HTTP server at `url`, with the gateway's credential. */
export const httpUpstream = (url) =>
  `{url: ${url}, headers: {${UPSTREAM_CREDENTIAL.name}: "${UPSTREAM_CREDENTIAL.value}"}}`;

/** `upstream:` for server-everything over stdio, started with `env`. */
export const stdioUpstream = (env) => `{command: [${JSON.stringify(EVERYTHING_BIN)}, stdio], env: ${JSON.stringify(env)}}`;

/** `upstream:` for the GraphQL example against the API at `url`, queries only. */
export const graphqlUpstream = (url) => `
      graphql:
        endpoint: ${url}
        schema: ${path.join(GRAPHQL_EXAMPLE, 'schema.graphql')}
        operations: ${path.join(GRAPHQL_EXAMPLE, 'operations')}
        headers: {Authorization: "${API_CREDENTIAL}"}
        exclude_mutations: true`;

/**
 * A client of `sdk` for the route at `url` that finds everything from the route's
 * 401 and gets a client_credentials token for `scope` (as `client`). Pushed on
 * `open` for the file's after() to close. Returns { client, transport, provider, log }.
 */
export function routeSdkClient({ sdk, url, issuer, scope, client: credentials = M2M, name = 'mcpgate-e2e-routes', open }) {
  const { Client, Transport, Provider } = SDKS[sdk];
  const provider = new Provider({
    clientId: credentials.clientId,
    clientSecret: credentials.clientSecret,
    expectedIssuer: issuer,
    scope,
  });
  const { fetch, log } = loggingFetch();
  const transport = new Transport(new URL(url), { authProvider: provider, fetch });
  const client = new Client({ name: `${name}-${sdk}`, version: '0.0.0' });
  open?.push(client);
  return { client, transport, provider, log };
}

/** The audit log at `auditPath`: every record so far, or the first matching one once written. */
export function auditLog(auditPath) {
  const records = async () => {
    const text = await readFile(auditPath, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  };
  /** Waits until the asynchronous audit writer has written a record matching `match`. */
  const record = async (match, what) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const found = (await records()).find(match);
      if (found) return found;
      if (Date.now() > deadline) assert.fail(`no audit record for ${what}:\n${JSON.stringify(await records(), null, 1)}`);
      await sleep(50);
    }
  };
  return { records, record };
}

/**
 * Writes `yaml` over the gateway's file, sends SIGHUP and waits for "config
 * reloaded" (a "reload failed" fails the test). Returns when it was seen.
 */
export async function reloadGateway(gateway, yaml) {
  await writeFile(gateway.configPath, yaml);
  const mark = gateway.proc.output.length;
  process.kill(gateway.proc.child.pid, 'SIGHUP');
  const deadline = Date.now() + 20_000;
  while (!gateway.proc.output.slice(mark).includes('config reloaded')) {
    assert.ok(!gateway.proc.output.slice(mark).includes('reload failed'), gateway.proc.output.slice(mark));
    assert.ok(Date.now() < deadline, `no reload:\n${gateway.proc.output.slice(mark)}`);
    await sleep(20);
  }
  return Date.now();
}
