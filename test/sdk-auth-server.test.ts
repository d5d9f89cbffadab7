// The SDK's tokens and admission against real nodes (test/sdk-auth.test.ts
// covers the same client rules against a spec peer): getToken at connect
// and ahead of expiry on a --auth jwt node, FORBIDDEN per topic, and a
// 503 RETRY_LATER from --admission-rate honored with its ticket.
import { SignJWT } from 'jose';
import { connect, type C10mClient } from '../sdk';
import { nextEvent, until } from './helpers/sdk';
import { startServer, type TestServer } from './helpers/server';

const SECRET = 'sdk-auth-server-test-secret-0123456789-abcdef';
const KEY = new TextEncoder().encode(SECRET);

function mint(sub: string, lifetimeSeconds: number): Promise<string> {
  return new SignJWT({ subscribe: ['/u/{sub}/>'], publish: ['/u/{sub}/>'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime(Math.floor(Date.now() / 1000) + lifetimeSeconds)
    .sign(KEY);
}

describe('SDK on a --auth jwt node', () => {
  let server: TestServer;
  const clients: C10mClient[] = [];
  beforeAll(async () => {
    server = await startServer(['--auth', 'jwt', '--jwt-secret', SECRET, '--jwt-clock-skew-seconds', '0', '--workgroups', '2']);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.stop();
  });

  test('getToken at connect and ahead of expiry keeps one session past its first token', async () => {
    let calls = 0;
    const c = connect(server.url(), {
      getToken: () => {
        calls++;
        return mint('ann', 3);
      },
      refreshAheadMs: 1500,
    });
    clients.push(c);
    const seen: unknown[] = [];
    const sub = c.subscribe('/u/ann/feed', (m) => seen.push(m.data));
    await sub.ready;
    const refreshed = await nextEvent(c, 'token', (e) => e.inBand, 8000);
    expect(refreshed.exp).toBeGreaterThan(Date.now() / 1000);
    // Past the first token's expiry (3 s): still the first connection, still delivering.
    await new Promise((r) => setTimeout(r, 2500));
    expect(c.state).toBe('connected');
    expect(c.stats.connections).toBe(1);
    await c.publish('/u/ann/feed', 'after the first exp');
    await until(() => seen.includes('after the first exp'), 'the delivery after the refresh');
    expect(calls).toBeGreaterThanOrEqual(2);
  });

  test("a topic outside the token's claims rejects only that subscription, with FORBIDDEN", async () => {
    const c = connect(server.url(), { getToken: () => mint('bo', 600) });
    clients.push(c);
    const mine = c.subscribe('/u/bo/a', () => {});
    const theirs = c.subscribe('/u/someone-else/a', () => {});
    await expect(theirs.ready).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(mine.ready).resolves.toHaveProperty('epoch');
    await expect(c.publish('/u/someone-else/a', 1)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(c.state).toBe('connected');
  });
});

describe('SDK on a node with --admission-rate', () => {
  test('a refused upgrade (503 RETRY_LATER) is retried at its hint with the ticket, and admitted', async () => {
    const server = await startServer(['--admission-rate', '1', '--workgroups', '1']);
    const clients: C10mClient[] = [];
    try {
      const first = connect(server.url());
      clients.push(first);
      await first.ready();
      // The second in the same second is beyond the rate: told when to come back.
      const second = connect(server.url());
      clients.push(second);
      const r = await nextEvent(second, 'reconnecting', () => true, 5000);
      expect(r.delayMs).toBeGreaterThan(0);
      expect(r.delayMs).toBeLessThan(5000);
      await second.ready();
      expect(second.stats.connections).toBe(1);
      const m = await fetch(server.adminUrl('/metrics')).then((x) => x.text());
      expect(Number(/^c10m_admission_tickets_honored_total\{[^}]*\} (\d+)/m.exec(m)?.[1] ?? 0) + Number(/^c10m_admission_refused_total\{[^}]*\} (\d+)/m.exec(m)?.[1] ?? 0)).toBeGreaterThanOrEqual(1);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.stop();
    }
  });
});
