import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli, startServer } from './helpers/server';

test('c10m --help and c10m serve --help explain the options', async () => {
  const top = await runCli(['--help']);
  expect(top.code).toBe(0);
  expect(top.stdout).toMatch(/serve/);
  const serve = await runCli(['serve', '--help']);
  expect(serve.code).toBe(0);
  for (const flag of [
    '--host',
    '--port',
    '--admin-host',
    '--admin-port',
    '--workgroups',
    '--max-payload-bytes',
    '--max-backpressure-bytes',
    '--idle-timeout-seconds',
    '--log-level',
    '--config',
    '--allow-slow-fallback',
    '--cache-messages',
    '--cache-seconds',
    '--cache-topic-bytes',
    '--cache-bytes',
    '--snapshot-ttl-seconds',
    '--ring-bytes',
    '--max-connections-per-ip',
    '--benchmark-mode',
    '--engine',
    '--redis-url',
    '--redis-cluster',
    '--redis-prefix',
    '--redis-wait-seconds',
  ]) {
    expect(serve.stdout).toContain(flag);
  }
  expect(serve.stdout).toContain('C10M_PORT');
  expect(serve.stdout).toContain('C10M_REDIS_URL');
  expect(serve.stdout).toMatch(/Exit codes: 0 .*; 1 .*; 2 /s);
});

test('a bad flag exits 2 with a clear message and no stack trace', async () => {
  const r = await runCli(['serve', '--no-such-flag']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/unknown option '--no-such-flag'/);
  expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
});

test.each([
  [['serve', '--port', 'eighty'], /--port: expected a whole number/],
  [['serve', '--port', '70000'], /--port: 70000 is above the maximum 65535/],
  [['serve', '--workgroups', '0'], /--workgroups: 0 is below the minimum 1/],
  [['serve', '--idle-timeout-seconds', '3'], /must be 0 or at least 8/],
  [['serve', '--log-level', 'loud'], /--log-level: expected one of/],
  [['serve', '--ring-bytes', '8192', '--max-payload-bytes', '65536'], /--ring-bytes 8192 is too small for --max-payload-bytes 65536/],
  [['serve', '--cache-messages', '-1'], /--cache-messages: -1 is below the minimum 0/],
  [['serve', '--cache-bytes', '1000'], /--cache-bytes: 1000 is below the minimum/],
])('bad value %j exits 2', async (args, message) => {
  const r = await runCli(args);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
});

test('bad environment and bad config file exit 2', async () => {
  const env = await runCli(['serve'], { C10M_MAX_PAYLOAD_BYTES: '-5' });
  expect(env.code).toBe(2);
  expect(env.stderr).toMatch(/C10M_MAX_PAYLOAD_BYTES: -5 is below the minimum/);
  const dir = mkdtempSync(path.join(tmpdir(), 'c10m-'));
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, '{"port": 1, "colour": "blue"}');
  const r1 = await runCli(['serve', '--config', bad]);
  expect(r1.code).toBe(2);
  expect(r1.stderr).toMatch(/unknown option "colour"/);
  writeFileSync(bad, '{oops');
  const r2 = await runCli(['serve', '--config', bad]);
  expect(r2.code).toBe(2);
  expect(r2.stderr).toMatch(/not valid JSON/);
  const r3 = await runCli(['serve', '--config', path.join(dir, 'missing.json')]);
  expect(r3.code).toBe(2);
  expect(r3.stderr).toMatch(/not found/);
});

test('precedence is flag > environment > config file > default', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'c10m-'));
  const file = path.join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ logLevel: 'error', maxPayloadBytes: 111, drainTimeoutSeconds: 3 }));
  // config file says error; env says warn; the flag (from the helper) says info: info wins, and the server logs at info.
  const s = await startServer(['--config', file], { C10M_LOG_LEVEL: 'warn', C10M_DRAIN_TIMEOUT_SECONDS: '4' });
  try {
    expect(s.logs.some((l) => l.msg === 'c10m listening')).toBe(true);
    // drain timeout comes from env (4) over the file (3): the shutdown log line says so.
  } finally {
    await s.stop();
  }
  const shutdownLine = s.logs.find((l) => l.msg === 'shutting down: draining sessions');
  expect(shutdownLine?.drainTimeoutSeconds).toBe(4);
});

test('serve refuses to start on the pure-JS uWS fallback unless allowed', async () => {
  const r = await runCli(['serve', '--port', '0', '--admin-port', '0'], { UWS_USE_FALLBACK: '1' });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/refusing to start: uWebSockets.js native binary did not load/);
  expect(r.stderr).toMatch(/--allow-slow-fallback/);
});
