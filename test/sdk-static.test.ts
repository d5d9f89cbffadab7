// An installation whose SDK bundle and demo files are missing (built without
// sdk/build.js, or copied without them) still serves WebSocket and HTTP
// publish; / and /sdk/c10m.js answer 503 with how to fix it, never crash.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnUntilReady, type Spawned } from '../bench/spawn';
import { ROOT } from './helpers/server';

jest.setTimeout(30_000);

let dir: string;
let server: Spawned | undefined;
let proc: ChildProcess;
let port: number;

beforeAll(async () => {
  // A copy of the package: compiled dist/ without dist/sdk-bundle, no sdk/demo/.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-nobundle-'));
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  fs.cpSync(path.join(ROOT, 'bin'), path.join(dir, 'bin'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true, filter: (src) => !src.includes(`${path.sep}sdk-bundle`) });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  fs.mkdirSync(path.join(dir, 'native-io'));
  if (fs.existsSync(path.join(ROOT, 'native-io', 'build'))) fs.symlinkSync(path.join(ROOT, 'native-io', 'build'), path.join(dir, 'native-io', 'build'));
  if (fs.existsSync(path.join(ROOT, 'server', 'dashboard'))) fs.cpSync(path.join(ROOT, 'server', 'dashboard'), path.join(dir, 'server', 'dashboard'), { recursive: true });
  expect(fs.existsSync(path.join(dir, 'dist', 'sdk-bundle'))).toBe(false);

  server = await spawnUntilReady({
    args: [path.join(dir, 'bin', 'c10m.js'), 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--workgroups', '1'],
    ready: (l) => l.msg === 'c10m listening',
  });
  proc = server.proc;
  port = server.ready.port as number;
});

afterAll(async () => {
  if (server) await server.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a missing bundle is a clear 503, and the server keeps serving', async () => {
  const base = `http://127.0.0.1:${port}`;
  const bundle = await fetch(`${base}/sdk/c10m.js`);
  expect(bundle.status).toBe(503);
  expect(bundle.headers.get('content-type')).toBe('text/plain; charset=utf-8');
  expect(await bundle.text()).toMatch(/SDK bundle is not built: run `npm run build`/);
  expect((await fetch(`${base}/sdk/c10m.js.map`)).status).toBe(503);
  const demo = await fetch(`${base}/`);
  expect(demo.status).toBe(503);
  expect(await demo.text()).toMatch(/demo page .* is missing/);
  // Still alive and publishing.
  const pub = await fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: '/still/up', data: 1 }) });
  expect(pub.status).toBe(200);
  expect(await pub.json()).toMatchObject({ seq: 1 });
  expect(proc.exitCode).toBeNull();
});
