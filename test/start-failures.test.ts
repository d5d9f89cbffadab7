// A start that cannot succeed says why in one line and exits: a port another
// c10m holds (its SO_REUSEPORT group must not be joined), a bad port, a bad flag.
import { request } from 'node:http';
import { runCli, startServer } from './helpers/server';

function publish(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/publish', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ topic: '/t/held', data: 1 }));
  });
}

/** One line, no stack trace. */
function expectOneLine(text: string): void {
  expect(text.trim().split('\n')).toHaveLength(1);
  expect(text).not.toMatch(/^\s+at .*:\d+/m);
}

test('a second serve on a port a running c10m holds exits 1 with one line; the first still serves', async () => {
  const first = await startServer(['--workgroups', '2']);
  try {
    const second = await runCli(['serve', '--port', String(first.port), '--host', '127.0.0.1', '--admin-port', '0', '--workgroups', '2'], {}, 10000);
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`c10m: could not start: port ${first.port} is already in use (another c10m or another program holds it)\n`);
    expect(second.stdout).not.toMatch(/c10m listening/);
    // Every connection still reaches the first, which answers.
    for (let i = 0; i < 4; i++) expect(await publish(first.port)).toBe(200);
  } finally {
    await first.stop();
  }
});

test('a held admin port is named as such', async () => {
  const first = await startServer();
  try {
    const second = await runCli(['serve', '--port', '0', '--host', '127.0.0.1', '--admin-port', String(first.adminPort)], {}, 10000);
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`c10m: could not start: admin port ${first.adminPort} is already in use (another c10m or another program holds it)\n`);
  } finally {
    await first.stop();
  }
});

test.each([
  [['serve', '--port', '99999'], 2, /--port: 99999 is above the maximum 65535/],
  [['serve', '--no-such-flag'], 2, /unknown option '--no-such-flag'/],
  [['serve', '--log-format', 'xml'], 2, /--log-format/],
])('%j fails with one line on stderr and nothing on stdout', async (args, code, message) => {
  const r = await runCli(args);
  expect(r.code).toBe(code);
  expect(r.stderr).toMatch(message);
  expectOneLine(r.stderr);
  expect(r.stdout).toBe('');
});
