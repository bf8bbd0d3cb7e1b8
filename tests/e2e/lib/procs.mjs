// Process and network helpers shared by every e2e test file.
//
// Every child is spawned in its own process group (detached: true) so that
// stopping it also stops whatever it spawned (npx shims, node grandchildren).
// A process 'exit' hook SIGKILLs any group still alive, so a failing or
// interrupted test file leaves no orphans behind.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set();

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // group already gone
  }
}

process.on('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(130));
}

/** Ask the kernel for a free loopback port (listen on 0, read it, close). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * Spawn a child in its own process group (so the whole group can be killed)
 * and remember it until it exits, for the kill-everything-on-exit handlers.
 */
function spawnTracked(cmd, args, { env, cwd, baseEnv }) {
  const child = spawn(cmd, args, {
    cwd,
    env: { ...baseEnv, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  return child;
}

/**
 * Spawn a long-running child in its own process group. Output is kept in
 * memory (and echoed with a prefix when E2E_VERBOSE is set) so a failing
 * test can print it.
 */
export function startProcess(name, cmd, args, { env = {}, cwd, baseEnv = process.env } = {}) {
  const child = spawnTracked(cmd, args, { env, cwd, baseEnv });
  let output = '';
  const onData = (chunk) => {
    const text = chunk.toString();
    output += text;
    if (process.env.E2E_VERBOSE) {
      for (const line of text.split('\n')) if (line) process.stderr.write(`[${name}] ${line}\n`);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  let exitInfo = null;
  exited.then((info) => {
    exitInfo = info;
  });
  return {
    name,
    child,
    get output() {
      return output;
    },
    get exitInfo() {
      return exitInfo;
    },
    exited,
    /** SIGTERM the whole group, SIGKILL it if it is still there after 3 s. */
    async stop() {
      if (exitInfo) return exitInfo;
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
      const info = await exited;
      clearTimeout(timer);
      // Grandchildren that ignored SIGTERM may outlive the leader.
      killGroup(child, 'SIGKILL');
      return info;
    },
  };
}

/**
 * Run a command to completion (own process group, killed on timeout) and
 * collect stdout/stderr separately.
 */
export function runProcess(cmd, args, { env = {}, cwd, timeoutMs = 60_000, baseEnv = process.env } = {}) {
  return new Promise((resolve) => {
    const child = spawnTracked(cmd, args, { env, cwd, baseEnv });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      killGroup(child, 'SIGKILL'); // stragglers in the group
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** Poll until a TCP connect to host:port succeeds. */
export async function waitForPort(port, { host = '127.0.0.1', timeoutMs = 20_000, proc } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const sock = net.connect({ port, host });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc?.exitInfo) {
      throw new Error(`${proc.name} exited (${JSON.stringify(proc.exitInfo)}) before listening:\n${proc.output}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${host}:${port}${proc ? `\n${proc.name} output:\n${proc.output}` : ''}`);
    }
    await sleep(100);
  }
}

/** Poll `proc`'s output until it contains `text`; throws if the process exits first. */
export async function waitForOutput(proc, text, { timeoutMs = 20_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.output.includes(text)) return;
    if (proc.exitInfo) {
      throw new Error(`${proc.name} exited (${JSON.stringify(proc.exitInfo)}) before printing ${JSON.stringify(text)}:\n${proc.output}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${proc.name} to print ${JSON.stringify(text)}:\n${proc.output}`);
    }
    await sleep(50);
  }
}

/** Poll an HTTP URL until `accept(response)` is true. */
export async function waitForHttp(url, { timeoutMs = 20_000, proc, accept = (r) => r.ok } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no response';
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (accept(res)) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    if (proc?.exitInfo) {
      throw new Error(`${proc.name} exited (${JSON.stringify(proc.exitInfo)}) before ${url} was ready:\n${proc.output}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${url} (last: ${last})${proc ? `\n${proc.name} output:\n${proc.output}` : ''}`);
    }
    await sleep(100);
  }
}

/** Pids of `ppid`'s child processes, ascending (zombies included: a child must be reaped to be gone). */
export function childrenOf(ppid) {
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // pid (comm) state ppid …; comm may contain spaces and parentheses.
    const [, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(parent) === ppid) pids.push(Number(entry));
  }
  return pids.sort((a, b) => a - b);
}
