// A command that fails inside the server costs that command (INTERNAL), logs
// at most a few lines a minute per cause, and a session that keeps making
// the server fail is closed (1011) while the others go on. The failures are
// injected (C10M_FAULT_INJECTION=1, POST /debug/fail-commands).
import { connect } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { metricSum, waitFor } from './helpers/workgroups';

describe('commands failing inside the server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1'], { C10M_FAULT_INJECTION: '1' });
  });
  afterAll(() => server.stop());

  test('each is answered INTERNAL; the 10th of one session closes it with 1011; 5 log lines a minute, the rest counted', async () => {
    const a = await connect(server.url());
    const b = await connect(server.url());
    const res = await fetch(server.adminUrl('/debug/fail-commands?workgroup=0&count=15'), { method: 'POST' });
    expect(res.status).toBe(202);
    const codes: unknown[] = [];
    for (let i = 0; i < 9; i++) codes.push(((await a.request({ op: 'ping' })).error as { code: string }).code);
    expect(codes).toEqual(Array(9).fill('INTERNAL'));
    a.send({ id: 'tenth', op: 'ping' });
    expect(await a.closed).toBe(1011);
    expect(a.closeReason).toMatch(/10 commands of this session failed/);
    // Another session on the same workgroup: its failures are its own, and it stays.
    for (let i = 0; i < 5; i++) expect(((await b.request({ op: 'ping' })).error as { code: string }).code).toBe('INTERNAL');
    expect((await b.request({ op: 'ping' })).ok).toBe(true);
    expect(b.closeCode).toBeNull();
    const lines = server.logs.filter((l) => l.msg === 'command handler failed');
    expect(lines.length).toBe(5);
    await waitFor(async () => (await metricSum(server, 'c10m_logs_suppressed_total')) === 10, 5000, 'the suppressed lines to be counted');
    expect(await metricSum(server, 'c10m_internal_errors_total')).toBe(15);
    await b.close();
  });
});
