// Runs a snippet of plain JS against the compiled native-io wrapper
// (dist/native-io) in a child process, with or without the addon, and
// returns the JSON it prints last. For what a test cannot do in its own
// process: force a GC, or have its rlimit lowered from outside.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../../native-io/package-root';

export const DIST_NATIVE_IO = path.join(packageRoot(), 'dist', 'native-io', 'index.js');

export interface ChildOptions {
  disabled: boolean;
  nodeArgs?: string[];
  /** Called with the child's pid once it prints "ready"; the child waits for a line on stdin after that. */
  onReady?: (pid: number) => Promise<void> | void;
}

/** `body` is the inside of an async function with `io` (the wrapper) in scope; it returns a JSON-able value. */
export function runNativeChild<T>(body: string, options: ChildOptions): Promise<T> {
  const env = { ...process.env };
  if (options.disabled) env.C10M_NATIVE_DISABLED = '1';
  else delete env.C10M_NATIVE_DISABLED;
  const code = `
    const io = require(${JSON.stringify(DIST_NATIVE_IO)});
    const ready = () => new Promise((resolve) => { process.stdin.once('data', resolve); console.log('ready'); });
    (async () => { ${body} })().then(
      (value) => { console.log(JSON.stringify({ value })); process.exit(0); },
      (err) => { console.log(JSON.stringify({ error: String(err && err.stack || err) })); process.exit(1); });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '-e', code], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    let readySeen = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', async (chunk: string) => {
      out += chunk;
      if (!readySeen && /^ready$/m.test(out)) {
        readySeen = true;
        try {
          await options.onReady?.(child.pid!);
        } catch (err) {
          child.kill('SIGKILL');
          reject(err);
          return;
        }
        child.stdin.write('go\n');
      }
    });
    child.on('error', reject);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      try {
        const parsed = JSON.parse(last) as { value?: T; error?: string };
        if (parsed.error !== undefined) reject(new Error(`child failed: ${parsed.error}`));
        else resolve(parsed.value as T);
      } catch {
        reject(new Error(`child exited (${status ?? signal}) without a result; it printed: ${out}`));
      }
    });
  });
}
