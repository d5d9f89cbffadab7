// A thread that ends with allocSharedAsync work in flight (the cache's
// prefetch in a workgroup that crashes) must never take the process down.
// Node runs such a job's completion while it tears the thread's environment
// down, with JS execution disallowed; before native-io handled that, the
// completion threw a Napi::Error out of the callback and the process aborted
// (SIGABRT) in every round. Each test runs in a child process, so an abort
// fails the test instead of killing jest.
import { spawn } from 'node:child_process';
import { DIST_NATIVE_IO } from './helpers/native-child';

const MiB = 1 << 20;

interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  result: { rounds: number; exits: Record<string, number>; arenaBytes: number; elapsedMs: number } | null;
  stderr: string;
}

/**
 * Rounds of three worker threads, each firing `jobs` allocSharedAsync calls
 * of `bytes` and ending at once: process.exit(), worker.terminate() from the
 * parent, an uncaught throw. Stops after `rounds` or `budgetMs`. The child's
 * own main thread loads the addon only at the end (so that a worker's
 * environment is the addon's last user while it goes away), then allocates.
 */
function runTeardownChild(rounds: number, budgetMs: number, jobs: number, bytes: number): Promise<ChildResult> {
  const worker = (how: string) => `
    const io = require(${JSON.stringify(DIST_NATIVE_IO)});
    const { parentPort } = require('node:worker_threads');
    for (let i = 0; i < ${jobs}; i++) io.allocSharedAsync(${bytes}).catch(() => {});
    parentPort.postMessage('fired');
    ${how === 'exit' ? 'process.exit(0);' : how === 'throw' ? "setImmediate(() => { throw new Error('thrown on purpose'); });" : 'setInterval(() => {}, 1000);'}
  `;
  const code = `
    const { Worker } = require('node:worker_threads');
    const bodies = { exit: ${JSON.stringify(worker('exit'))}, terminate: ${JSON.stringify(worker('terminate'))}, throw: ${JSON.stringify(worker('throw'))} };
    (async () => {
      const started = Date.now();
      const exits = { exit: 0, terminate: 0, throw: 0 };
      let r = 0;
      for (; r < ${rounds} && Date.now() - started < ${budgetMs}; r++) {
        await Promise.all(Object.keys(bodies).map((how) => new Promise((resolve) => {
          const w = new Worker(bodies[how], { eval: true });
          w.on('error', () => {});
          w.on('message', () => { if (how === 'terminate') w.terminate(); });
          w.on('exit', () => { exits[how]++; resolve(); });
        })));
      }
      const io = require(${JSON.stringify(DIST_NATIVE_IO)});
      const arena = await io.allocSharedAsync(4 * 1024 * 1024);
      console.log(JSON.stringify({ rounds: r, exits, arenaBytes: arena.buffer.byteLength, elapsedMs: Date.now() - started }));
    })();
  `;
  const env = { ...process.env };
  delete env.C10M_NATIVE_DISABLED;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), budgetMs + 20_000);
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      let result: ChildResult['result'] = null;
      try {
        result = JSON.parse(out.trim().split('\n').pop() ?? '') as ChildResult['result'];
      } catch {
        // No result line: the child died; status and signal say how.
      }
      resolve({ status, signal, result, stderr: stderr.slice(-2000) });
    });
  });
}

describe('allocSharedAsync in flight while its thread ends', () => {
  test('64 MiB jobs, threads ending by process.exit, terminate() and an uncaught throw: the process exits 0 and the addon still works', async () => {
    const r = await runTeardownChild(50, 12_000, 12, 64 * MiB);
    expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(r.result).not.toBeNull();
    const res = r.result!;
    // Bounded by time: at least a few rounds of each way out ran.
    expect(res.rounds).toBeGreaterThanOrEqual(5);
    expect(res.exits).toEqual({ exit: res.rounds, terminate: res.rounds, throw: res.rounds });
    expect(res.arenaBytes).toBe(4 * MiB);
  }, 45_000);

  test('small jobs that finish while the thread is going away (completions racing the teardown): exits 0', async () => {
    const r = await runTeardownChild(60, 6_000, 64, 2 * MiB);
    expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(r.result!.rounds).toBeGreaterThanOrEqual(5);
  }, 30_000);
});
