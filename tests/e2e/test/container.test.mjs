// mcpgate's container image (Containerfile, built by scripts/image) under a private
// Docker engine, against real peers on loopback (the containers use the host's
// network):
//
// - one container: /readyz on the admin port, a 401 with its challenge, a tools
//   call with an oidc-provider token through to server-everything (named
//   `localhost` in the config: the static binary resolves names in an empty image),
//   the non-root user and the OCI labels, a SIGHUP reload inside the container that
//   changes the scopes, and SIGTERM (docker stop) ending it within the grace period
//   with exit 0;
// - two containers sharing one real Redis behind a round-robin load balancer: one
//   MCP session whose requests alternate between the replicas keeps working.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { M2M, requestToken, startAuthServer } from '../lib/as.mjs';
import {
  configDir,
  containerLogs,
  docker,
  dockerRaw,
  ensureImage,
  runContainer,
  stopEngine,
  waitForLog,
} from '../lib/container.mjs';
import { startEverything } from '../lib/everything.mjs';
import { gatewayConfigYaml } from '../lib/gateway.mjs';
import { freePort, startProcess, waitForHttp, waitForPort } from '../lib/procs.mjs';
import { startRecorder } from '../lib/recorder.mjs';

const stoppers = [];
let as;
let recorder;
let lbPort;
let publicUrl;
let image;

before(async () => {
  image = await ensureImage();
  stoppers.push(() => stopEngine());
  lbPort = await freePort();
  publicUrl = `http://127.0.0.1:${lbPort}/mcp`;
  as = await startAuthServer({ resource: publicUrl });
  stoppers.push(() => as.stop());
  const everything = await startEverything();
  stoppers.push(() => everything.stop());
  recorder = await startRecorder({ targetPort: everything.port });
  stoppers.push(() => recorder.stop());
});

after(async () => {
  for (const stop of stoppers.reverse()) {
    try {
      await stop();
    } catch (err) {
      console.error('teardown error:', err);
    }
  }
});

/** A config for one replica: its own ports, the load balancer's public URL. */
function replicaYaml({ gwPort, adminPort, scopesYaml, topExtra = '' }) {
  return gatewayConfigYaml({
    gwPort,
    // `localhost`, not an address: resolved inside the image (/etc/hosts).
    upstreamUrl: `http://localhost:${recorder.port}/mcp`,
    issuer: as.issuer,
    serverExtra: `  admin_listen: 127.0.0.1:${adminPort}\n  shutdown_grace: 5s\n`,
    scopesYaml,
    topExtra,
  }).replace(`public_url: http://127.0.0.1:${gwPort}/mcp`, `public_url: ${publicUrl}`);
}

async function token(scope = 'mcp:connect mcp:tools') {
  const { access_token } = await requestToken(as, { scope, resource: publicUrl, clientId: M2M.clientId });
  return access_token;
}

async function connect(url, bearer) {
  const client = new Client({ name: 'container-e2e', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }),
  );
  return client;
}

async function startReplica(role, options) {
  // Unique per run: a container left by an interrupted run never blocks the name.
  const name = `mcpgate-e2e-${role}-${process.pid}`;
  const gwPort = await freePort();
  const adminPort = await freePort();
  const config = await configDir(replicaYaml({ gwPort, adminPort, ...options }));
  stoppers.push(() => dockerRaw(['rm', '-f', name]));
  await runContainer(name, config.dir);
  await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`, { timeoutMs: 30_000 }).catch(async (err) => {
    throw new Error(`${err.message}\n${await containerLogs(name)}`);
  });
  return { name, gwPort, adminPort, config, url: `http://127.0.0.1:${gwPort}/mcp` };
}

test('one container: ready, challenges, proxies as a non-root user, reloads on SIGHUP, drains on SIGTERM', async () => {
  const tools = 'scopes:\n  initialize: [mcp:connect]\n  tools_call: [mcp:tools]\n';
  const replica = await startReplica('one', { scopesYaml: tools });

  const inspect = JSON.parse(await docker(['inspect', replica.name]))[0];
  assert.equal(inspect.Config.User, '65532:65532');
  assert.equal(inspect.Config.Labels['org.opencontainers.image.title'], 'mcpgate');
  assert.match(inspect.Config.Labels['org.opencontainers.image.version'], /^\d+\.\d+\.\d+/);
  const version = await docker(['run', '--rm', '--network', 'none', image, '--version']);
  assert.match(version, /^mcpgate \d+\.\d+\.\d+ \(([0-9a-f]{12}|unknown)\)$/);

  const ready = await fetch(`http://127.0.0.1:${replica.adminPort}/readyz`);
  assert.equal(ready.status, 200);
  const unauthenticated = await fetch(replica.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(unauthenticated.status, 401);
  assert.equal(
    unauthenticated.headers.get('www-authenticate'),
    `Bearer realm="mcp", scope="mcp:connect", resource_metadata="http://127.0.0.1:${lbPort}/.well-known/oauth-protected-resource/mcp"`,
  );

  const bearer = await token();
  const client = await connect(replica.url, bearer);
  const result = await client.callTool({ name: 'echo', arguments: { message: 'from a container' } });
  assert.match(JSON.stringify(result.content), /from a container/);
  const call = recorder.requests.find((r) => r.body.includes('from a container'));
  assert.ok(call, 'the tools call reached the upstream');
  assert.equal(call.headers.host, `localhost:${recorder.port}`, 'the upstream was reached by name');
  assert.equal(call.headers.authorization, undefined, "the client's token stays at the gateway");

  // SIGHUP inside the container: tools now need mcp:admin.
  await replica.config.rewrite(
    replicaYaml({
      gwPort: replica.gwPort,
      adminPort: replica.adminPort,
      scopesYaml: 'scopes:\n  initialize: [mcp:connect]\n  tools_call: [mcp:admin]\n',
    }),
  );
  await docker(['kill', '--signal', 'HUP', replica.name]);
  await waitForLog(replica.name, 'config reloaded');
  await assert.rejects(
    client.callTool({ name: 'echo', arguments: { message: 'after the reload' } }),
    (err) => err.code === 403,
  );
  assert.ok(!recorder.requests.some((r) => r.body.includes('after the reload')), 'refused at the gateway');
  await client.close().catch(() => {});

  // SIGTERM: drained and stopped well within docker's 30 s, exit 0.
  const started = Date.now();
  await docker(['stop', '--time', '30', replica.name], { timeoutMs: 60_000 });
  const took = Date.now() - started;
  assert.ok(took < 10_000, `stopped in ${took} ms`);
  const state = JSON.parse(await docker(['inspect', replica.name]))[0].State;
  assert.equal(state.ExitCode, 0, await containerLogs(replica.name));
  assert.match(await containerLogs(replica.name), /mcpgate stopped/);
});

/** Sends each request to the next target in turn; counts what each got. */
async function roundRobin(port, targets) {
  const served = targets.map(() => 0);
  let next = 0;
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const index = next++ % targets.length;
    served[index]++;
    const upstream = http.request(
      { host: '127.0.0.1', port: targets[index], method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { served, close: () => new Promise((resolve) => server.close(resolve)) };
}

test('two containers share sessions through one Redis behind a load balancer', async () => {
  const redisPort = await freePort();
  const redis = startProcess('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  stoppers.push(() => redis.stop());
  await waitForPort(redisPort, { proc: redis });
  const shared = { topExtra: `session:\n  store: redis://127.0.0.1:${redisPort}/0\n` };
  const a = await startReplica('a', shared);
  const b = await startReplica('b', shared);
  const lb = await roundRobin(lbPort, [a.gwPort, b.gwPort]);
  stoppers.push(() => lb.close());

  const client = await connect(publicUrl, await token());
  for (let i = 0; i < 4; i++) {
    const result = await client.callTool({ name: 'echo', arguments: { message: `replica round ${i}` } });
    assert.match(JSON.stringify(result.content), new RegExp(`replica round ${i}`));
  }
  await client.close().catch(() => {});
  assert.ok(lb.served.every((n) => n >= 2), `each replica served the session: ${lb.served}`);
});
