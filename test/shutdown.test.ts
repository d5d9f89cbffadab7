import { CloseCode } from '../protocol/errors';
import { connect } from './helpers/client';
import { startServer } from './helpers/server';

test('SIGTERM: clients are told to reconnect elsewhere (1001), the server drains and exits 0', async () => {
  const server = await startServer(['--workgroups', '2', '--drain-timeout-seconds', '5']);
  expect((await fetch(server.adminUrl('/readyz'))).status).toBe(200);
  const clients = await Promise.all(Array.from({ length: 20 }, () => connect(server.url())));
  await Promise.all(clients.map((c) => c.sub(['/bye'])));
  const code = server.stop();
  const closes = await Promise.all(clients.map((c) => c.closed));
  expect(closes.every((c) => c === CloseCode.SHUTDOWN)).toBe(true);
  expect(clients[0].closeReason).toBe('server shutting down; reconnect');
  expect(await code).toBe(0);
  const drained = server.logs.filter((l) => l.msg === 'shut down');
  expect(drained.length).toBe(1);
});

test('readiness turns off as soon as shutdown starts, before sessions are closed', async () => {
  // A long drain: one client that ignores the close keeps the server draining.
  const server = await startServer(['--workgroups', '1', '--drain-timeout-seconds', '3']);
  const c = await connect(server.url());
  server.proc.kill('SIGTERM');
  await server.waitForLog((l) => l.msg === 'shutting down: draining sessions');
  const ready = await fetch(server.adminUrl('/readyz')).catch(() => null);
  // Either the admin port already answers 503, or it is already closed: never 200.
  if (ready !== null) expect(ready.status).toBe(503);
  expect(await c.closed).toBe(CloseCode.SHUTDOWN);
  // One SIGTERM only (a second one means "exit now" and gives 1).
  const exitCode = server.proc.exitCode ?? (await new Promise<number | null>((resolve) => server.proc.once('exit', (code) => resolve(code))));
  expect(exitCode).toBe(0);
});
