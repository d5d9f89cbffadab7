// --log-format: JSON lines for collectors, pino-pretty lines for a person;
// auto picks JSON when stdout is not a terminal (a pipe here).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI } from './helpers/server';

/** Runs serve with args until its output contains `until`, then stops it; returns stdout. */
function serveUntil(args: string[], until: RegExp, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--workgroups', '1', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`no ${until} in: ${out} ${err}`));
    }, 15000);
    proc.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      if (until.test(out)) proc.kill('SIGTERM');
    });
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    proc.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

test('--log-format pretty prints readable lines, not JSON', async () => {
  const out = await serveUntil(['--log-format', 'pretty'], /c10m listening/);
  const line = out.split('\n').find((l) => l.includes('c10m listening'))!;
  expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: c10m listening/);
  expect(() => JSON.parse(line)).toThrow();
});

test('C10M_LOG_FORMAT=json and auto on a pipe print JSON lines', async () => {
  for (const env of [{ C10M_LOG_FORMAT: 'json' }, {}]) {
    const out = await serveUntil([], /c10m listening/, env);
    const line = out.split('\n').find((l) => l.includes('c10m listening'))!;
    expect(JSON.parse(line)).toMatchObject({ msg: 'c10m listening', role: 'control' });
  }
});

test('the config file key logFormat works like the flag', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'c10m-log-'));
  const file = path.join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ logFormat: 'pretty' }));
  const out = await serveUntil(['--config', file], /c10m listening/);
  expect(out).toMatch(/^\[[\d:.]+\] INFO: c10m listening/m);
});
