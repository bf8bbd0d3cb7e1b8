// mcpgate's container image under a private Docker engine (scripts/container-engine):
// the image is built once per run by scripts/image, unless MCPGATE_IMAGE names one
// already built (scripts/test does that, with DOCKER_HOST set to its engine).
// Containers use the host's network: the engine runs without a bridge or iptables,
// and everything the tests start listens on loopback.
import { chmod, mkdtemp, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './gateway.mjs';
import { runProcess } from './procs.mjs';

let engine; // { env, own }: own when this process started the engine
let image;

async function run(cmd, args, { timeoutMs = 120_000, env = {} } = {}) {
  const result = await runProcess(cmd, args, { env: { ...engine?.env, ...env }, timeoutMs, cwd: REPO_ROOT });
  if (result.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${result.code}${result.timedOut ? ', timed out' : ''}):\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout.trim();
}

/** `docker …` against the engine; its stdout. */
export function docker(args, options) {
  return run('docker', args, options);
}

/** `docker …` that may fail: { code, stdout, stderr }. */
export function dockerRaw(args, { timeoutMs = 60_000 } = {}) {
  return runProcess('docker', args, { env: engine?.env ?? {}, timeoutMs, cwd: REPO_ROOT });
}

/** The engine and the image, started and built on first use. */
export async function ensureImage() {
  if (image) return image;
  if (process.env.MCPGATE_IMAGE && process.env.DOCKER_HOST) {
    engine = { env: {}, own: false };
    image = process.env.MCPGATE_IMAGE;
    return image;
  }
  const exports = await run(path.join(REPO_ROOT, 'scripts', 'container-engine'), ['start'], { timeoutMs: 600_000 });
  const env = Object.fromEntries(
    exports
      .replace(/^export /, '')
      .split(' ')
      .map((pair) => pair.split('=')),
  );
  engine = { env, own: true };
  await run(path.join(REPO_ROOT, 'scripts', 'image'), [], { timeoutMs: 1_800_000 });
  image = 'mcpgate:latest';
  return image;
}

/** Stops the engine if this process started it. */
export async function stopEngine() {
  if (engine?.own) await run(path.join(REPO_ROOT, 'scripts', 'container-engine'), ['stop']);
  engine = undefined;
  image = undefined;
}

/**
 * A folder for one container's /etc/mcpgate, readable by the image's user
 * (65532), with `yaml` as mcpgate.yaml. `rewrite(yaml)` replaces it atomically.
 */
export async function configDir(yaml) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mcpgate-container-'));
  await chmod(dir, 0o755);
  const rewrite = async (text) => {
    const staged = path.join(dir, '.mcpgate.yaml.new');
    await writeFile(staged, text, { mode: 0o644 });
    await chmod(staged, 0o644);
    await rename(staged, path.join(dir, 'mcpgate.yaml'));
  };
  await rewrite(yaml);
  return { dir, rewrite };
}

/**
 * Runs the image detached with `dir` as /etc/mcpgate, a read-only root filesystem
 * and the host's network; returns the container's name.
 */
export async function runContainer(name, dir, { env = {} } = {}) {
  const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  await docker([
    'run', '-d', '--name', name,
    '--network', 'host',
    '--read-only',
    '-v', `${dir}:/etc/mcpgate:ro`,
    ...envArgs,
    image,
  ]);
  return name;
}

/** The container's log so far (mcpgate writes it to stderr). */
export async function containerLogs(name) {
  const { stdout, stderr } = await dockerRaw(['logs', name]);
  return stdout + stderr;
}

/** Waits until the container's log contains `text` `count` times. */
export async function waitForLog(name, text, { count = 1, timeoutMs = 20_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const logs = await containerLogs(name);
    if (logs.split(text).length - 1 >= count) return logs;
    if (Date.now() > deadline) throw new Error(`${name}: no "${text}" (x${count}) in:\n${logs}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
