// Admission at the upgrade (workgroups/admission.ts): the node rate
// (--admission-rate) gives every refused client a place ahead and a signed
// ticket, so that a crowd coming back at once is spread over crowd / rate
// seconds and no client that comes back at its time is refused again; the
// per-address session rate (--max-sessions-per-second-per-ip) answers 429
// and recovers the next second. The core is tested with a fake clock, then
// a real server answers real upgrades.
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { ADMISSION_HORIZON_SECONDS, Admission, AddressRate, AddressVerdict, Admit, TICKET_GRACE_SECONDS } from '../workgroups/admission';
import { MAX_PROBE, SecondTable } from '../workgroups/second-table';
import { TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';
import { metricSum, sourceAddresses } from './helpers/workgroups';
import { seeded } from './helpers/random';

/** A realistic epoch second (the core counts whole seconds of Date.now()). */
const T0 = 1_760_000_000_000;

describe('the admission core (fake clock)', () => {
  test('a crowd of N refused at once gets places spread over N / rate seconds; every holder coming back at its time is admitted, at the rate', () => {
    const rate = 50;
    const N = 1000;
    const a = new Admission(rate, randomBytes(32), seeded(1));
    const now = T0 + 200;
    const holders: { ticket: string; at: number }[] = [];
    let admittedAtOnce = 0;
    for (let i = 0; i < N; i++) {
      const v = a.admit(now, '');
      if (v === Admit.ADMITTED) {
        admittedAtOnce++;
        continue;
      }
      expect(v).toBe(Admit.REFUSED);
      expect(a.ticket).toMatch(/^[A-Za-z0-9_-]{32}$/);
      holders.push({ ticket: a.ticket as string, at: now + a.retryAfterMs });
    }
    expect(admittedAtOnce).toBe(rate);
    const hints = holders.map((h) => h.at - now);
    // Spread: the last place is (N - rate) / rate seconds ahead, give or take the jitter inside a second.
    const lastSecond = Math.floor(Math.max(...holders.map((h) => h.at)) / 1000) - Math.floor(now / 1000);
    expect(lastSecond).toBe((N - rate) / rate);
    expect(Math.min(...hints)).toBeGreaterThan(0);
    expect(a.backlogSeconds(now)).toBe((N - rate) / rate);
    // Each second ahead got exactly `rate` places.
    const perSecond = new Map<number, number>();
    for (const h of holders) perSecond.set(Math.floor(h.at / 1000), (perSecond.get(Math.floor(h.at / 1000)) ?? 0) + 1);
    expect([...perSecond.values()].every((n) => n === rate)).toBe(true);
    // Jitter: inside each second the holders are spread (not all at its first ms).
    const offsets = new Set(holders.map((h) => h.at % 1000));
    expect(offsets.size).toBeGreaterThan(N / 4);

    // They come back in time order, each at its time: none is refused; no more than the rate a second gets in.
    holders.sort((x, y) => x.at - y.at);
    const admittedPerSecond = new Map<number, number>();
    for (const h of holders) {
      expect(a.admit(h.at, h.ticket)).toBe(Admit.TICKET_HONORED);
      const s = Math.floor(h.at / 1000);
      admittedPerSecond.set(s, (admittedPerSecond.get(s) ?? 0) + 1);
    }
    expect(Math.max(...admittedPerSecond.values())).toBe(rate);
  });

  test('newcomers during the crowd queue behind it; a second whose holders all came has no room for walk-ins', () => {
    const a = new Admission(10, randomBytes(32), seeded(2));
    const now = T0;
    const first: { ticket: string; at: number }[] = [];
    for (let i = 0; i < 40; i++) if (a.admit(now, '') === Admit.REFUSED) first.push({ ticket: a.ticket as string, at: now + a.retryAfterMs });
    expect(first).toHaveLength(30);
    // Second +1: its 10 holders come back; a newcomer then is refused and given second +4 (after the crowd).
    const second1 = first.filter((h) => Math.floor(h.at / 1000) === Math.floor(now / 1000) + 1);
    expect(second1).toHaveLength(10);
    for (const h of second1) expect(a.admit(h.at, h.ticket)).toBe(Admit.TICKET_HONORED);
    const t1 = now + 1500;
    expect(a.admit(t1, '')).toBe(Admit.REFUSED);
    expect(Math.floor((t1 + a.retryAfterMs) / 1000)).toBe(Math.floor(now / 1000) + 4);
  });

  test('a ticket is single use, cannot be forged, expires after its grace, and is not honored by another key (another workgroup, a restart)', () => {
    const key = randomBytes(32);
    const a = new Admission(1, key, seeded(3));
    expect(a.admit(T0, '')).toBe(Admit.ADMITTED);
    expect(a.admit(T0, '')).toBe(Admit.REFUSED);
    const ticket = a.ticket as string;
    const at = T0 + a.retryAfterMs;
    // Forged: one character changed (in the MAC, then in the second).
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    for (const forged of [flip(ticket, 20), flip(ticket, 3), ticket.slice(0, 31), ticket + 'A', 'x'.repeat(32), '!'.repeat(32)]) {
      const b = new Admission(1, key, seeded(3));
      b.admit(at, '');
      // The second is spent by the admission above: a forged ticket is refused (and said to be).
      expect(b.admit(at, forged)).toBe(Admit.REFUSED);
      expect(b.ticketRefused).toBe(true);
    }
    // Another key (another workgroup, or this one after a restart): not honored; treated as a newcomer.
    const other = new Admission(1, randomBytes(32), seeded(3));
    other.admit(at, '');
    expect(other.admit(at, ticket)).toBe(Admit.REFUSED);
    expect(other.ticketRefused).toBe(true);
    // The real holder: honored once; the same ticket again is not.
    expect(a.admit(at, ticket)).toBe(Admit.TICKET_HONORED);
    expect(a.admit(at + 10, ticket)).toBe(Admit.REFUSED);
    expect(a.ticketRefused).toBe(true);
    // Expired: a fresh ticket presented after its second + grace.
    const c = new Admission(1, key, seeded(4));
    c.admit(T0, '');
    c.admit(T0, '');
    const late = c.ticket as string;
    const lateAt = (Math.floor((T0 + c.retryAfterMs) / 1000) + TICKET_GRACE_SECONDS + 1) * 1000 + 10;
    expect(c.admit(lateAt, late)).toBe(Admit.ADMITTED); // the second had room: admitted as a newcomer
    expect(c.ticketRefused).toBe(true);
    // Within grace: honored.
    const d = new Admission(1, key, seeded(5));
    d.admit(T0, '');
    d.admit(T0, '');
    const graceAt = (Math.floor((T0 + d.retryAfterMs) / 1000) + TICKET_GRACE_SECONDS) * 1000 + 999;
    expect(d.admit(graceAt, d.ticket as string)).toBe(Admit.TICKET_HONORED);
  });

  test('a holder that comes back early is told to wait for its place, with the same ticket, and is admitted then', () => {
    const a = new Admission(1, randomBytes(32), seeded(6));
    a.admit(T0, '');
    a.admit(T0, '');
    const ticket = a.ticket as string;
    const at = T0 + a.retryAfterMs;
    for (let i = 0; i < 5; i++) a.admit(T0 + 10, ''); // more newcomers take later places
    expect(a.admit(T0 + 100, ticket)).toBe(Admit.REFUSED);
    expect(a.ticketRefused).toBe(false);
    expect(a.ticket).toBe(ticket);
    expect(Math.floor((T0 + 100 + a.retryAfterMs) / 1000)).toBe(Math.floor(at / 1000));
    expect(a.admit(at, ticket)).toBe(Admit.TICKET_HONORED);
  });

  test('places no one claims (clients that cannot read the answer) go to the next second: the rate is kept under a storm of walk-ins', () => {
    const rate = 20;
    const a = new Admission(rate, randomBytes(32), seeded(7));
    // 60 s of 200 walk-in attempts a second, none ever using its ticket (browsers retrying on their own backoff).
    const admitted: number[] = [];
    for (let sec = 0; sec < 60; sec++) {
      let n = 0;
      for (let i = 0; i < 200; i++) if (a.admit(T0 + sec * 1000 + i * 5, '') === Admit.ADMITTED) n++;
      admitted.push(n);
    }
    // Second 0 takes the rate, second 1 nothing (its places were given to tickets), then the rate again from the unclaimed places.
    expect(admitted[0]).toBe(rate);
    expect(admitted.slice(2).every((n) => n === rate)).toBe(true);
  });

  test('past the horizon a refused client gets no place and no ticket, and a hint beyond the horizon', () => {
    const a = new Admission(1, randomBytes(32), seeded(8));
    a.admit(T0, '');
    for (let i = 0; i < ADMISSION_HORIZON_SECONDS; i++) {
      expect(a.admit(T0, '')).toBe(Admit.REFUSED);
      expect(a.ticket).not.toBeNull();
    }
    expect(a.admit(T0, '')).toBe(Admit.REFUSED);
    expect(a.ticket).toBeNull();
    expect(a.retryAfterMs).toBeGreaterThan(ADMISSION_HORIZON_SECONDS * 1000);
    expect(a.retryAfterMs).toBeLessThan(2 * ADMISSION_HORIZON_SECONDS * 1000 + 1000);
  });

  test('a rate below one a second (a node rate split among more workgroups) admits one every few seconds', () => {
    const a = new Admission(0.25, randomBytes(32), seeded(9));
    let admitted = 0;
    for (let sec = 0; sec < 40; sec++) if (a.admit(T0 + sec * 1000, '') === Admit.ADMITTED) admitted++;
    // 40 s at 0.25/s: 10 places, some given to the tickets of the refused (never claimed, then recycled).
    expect(admitted).toBeGreaterThanOrEqual(5);
    expect(admitted).toBeLessThanOrEqual(10);
    expect(() => new Admission(0, randomBytes(32))).toThrow(RangeError);
  });
});

describe('the per-address rate and its table (fake clock)', () => {
  test('over the limit in one second, recovered the next; other addresses unaffected', () => {
    const r = new AddressRate(3);
    for (let i = 0; i < 3; i++) expect(r.take(42, T0 + i)).toBe(AddressVerdict.OK);
    expect(r.take(42, T0 + 500)).toBe(AddressVerdict.OVER);
    expect(r.take(43, T0 + 500)).toBe(AddressVerdict.OK);
    expect(r.take(42, T0 + 1000)).toBe(AddressVerdict.OK);
  });

  test('the table is bounded: full around a home it refuses; entries of past seconds are taken again', () => {
    const t = new SecondTable(MAX_PROBE);
    expect(t.slots).toBe(MAX_PROBE);
    const s = 1_760_000_000;
    for (let k = 1; k <= MAX_PROBE; k++) expect(t.add(k, s, s)).toBe(1);
    expect(t.add(MAX_PROBE + 1, s, s)).toBe(0);
    expect(t.add(7, s, s)).toBe(2);
    expect(t.count(7, s)).toBe(2);
    // The next second: every entry is dead, slots are reused, counts start again.
    expect(t.add(MAX_PROBE + 1, s + 1, s + 1)).toBe(1);
    expect(t.add(7, s + 1, s + 1)).toBe(1);
    expect(t.count(8, s + 1)).toBe(0);
    const rate = new AddressRate(10, MAX_PROBE);
    for (let k = 1; k <= MAX_PROBE; k++) rate.take(k, T0);
    expect(rate.take(MAX_PROBE + 1, T0)).toBe(AddressVerdict.FULL);
    expect(rate.take(MAX_PROBE + 1, T0 + 1000)).toBe(AddressVerdict.OK);
  });
});

// ---- a real server ---------------------------------------------------------

interface UpgradeAnswer {
  status: number;
  retryAfter: string | null;
  body: { error?: { code: string; message: string; retryAfterMs?: number; ticket?: string } };
  client: TestClient | null;
}

/** One upgrade (from `address` when given): the open session, or the refusal's status, Retry-After and body. */
function upgrade(server: TestServer, query = '', address?: string): Promise<UpgradeAnswer> {
  const ws = new WebSocket(server.url(`/v1/ws?encoding=json${query}`), address === undefined ? {} : { localAddress: address });
  const client = new TestClient(ws, 'json');
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ status: 101, retryAfter: null, body: {}, client }));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, retryAfter: (res.headers['retry-after'] as string | undefined) ?? null, body: JSON.parse(text), client: null });
      });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for the start of a second (the server counts whole seconds of the same clock), so that a burst falls in one second. */
async function startOfSecond(): Promise<void> {
  await sleep(1000 - (Date.now() % 1000) + 20);
}

describe('a server with --max-sessions-per-second-per-ip', () => {
  let server: TestServer;
  const open: TestClient[] = [];
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1', '--max-sessions-per-second-per-ip', '3']);
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.close()));
    await server.stop();
  });

  test('a burst from one address: 3 admitted, the rest 429 RATE_LIMITED with Retry-After: 1; another address is not affected; the next second admits again', async () => {
    const [a, b] = sourceAddresses(2, 7000);
    await startOfSecond();
    const answers = await Promise.all([0, 1, 2, 3, 4].map(() => upgrade(server, '', a)));
    const other = await upgrade(server, '', b);
    for (const r of [...answers, other]) if (r.client) open.push(r.client);
    expect(answers.filter((r) => r.status === 101)).toHaveLength(3);
    const refused = answers.filter((r) => r.status !== 101);
    expect(refused).toHaveLength(2);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.retryAfter).toBe('1');
      expect(r.body.error?.code).toBe('RATE_LIMITED');
      expect(r.body.error?.message).toMatch(/at most 3 new sessions per second per address/);
      // Into the next second, no further.
      expect(r.body.error?.retryAfterMs).toBeGreaterThan(0);
      expect(r.body.error?.retryAfterMs).toBeLessThanOrEqual(1000);
    }
    expect(other.status).toBe(101);
    // Recovered: after the hint, the same address is admitted.
    await sleep(refused[0].body.error?.retryAfterMs ?? 1000);
    const again = await upgrade(server, '', a);
    if (again.client) open.push(again.client);
    expect(again.status).toBe(101);
    // No --admission-rate: the ping reply gives no reconnect window.
    const pong = await again.client!.request({ op: 'ping' });
    expect(pong).toMatchObject({ ok: true });
    expect(pong).not.toHaveProperty('reconnectWindowMs');
    expect(await metricSum(server, 'c10m_session_rate_refused_total')).toBe(2);
    expect(await metricSum(server, 'c10m_sessions_rejected_total')).toBe(2);
  });
});

describe('a server with --admission-rate', () => {
  let server: TestServer;
  const open: TestClient[] = [];
  beforeAll(async () => {
    server = await startServer(['--workgroups', '1', '--admission-rate', '2']);
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.close()));
    await server.stop();
  });

  test('beyond the rate: 503 RETRY_LATER with Retry-After, retryAfterMs and a ticket; the ticket is honored at its time though the rate is spent; a forged or reused one is not', async () => {
    await startOfSecond();
    const first = await Promise.all([upgrade(server), upgrade(server)]);
    for (const r of first) {
      expect(r.status).toBe(101);
      open.push(r.client as TestClient);
    }
    const refused = await upgrade(server);
    expect(refused.status).toBe(503);
    const err = refused.body.error!;
    expect(err.code).toBe('RETRY_LATER');
    expect(err.ticket).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(err.retryAfterMs).toBeGreaterThan(0);
    expect(err.retryAfterMs).toBeLessThanOrEqual(2000);
    expect(Number(refused.retryAfter)).toBe(Math.max(1, Math.floor(err.retryAfterMs! / 1000)));
    // A forged ticket: refused, and given a place of its own (the second place of that second, which is now spent).
    const forged = err.ticket!.slice(0, 10) + (err.ticket![10] === 'A' ? 'B' : 'A') + err.ticket!.slice(11);
    const f = await upgrade(server, `&admit=${forged}`);
    expect(f.status).toBe(503);
    expect(f.body.error?.ticket).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(f.body.error?.ticket).not.toBe(err.ticket);
    // The ticket's second (its first 4 bytes; opaque to clients, read here to time the checks) is the next one.
    const second = Buffer.from(err.ticket!, 'base64url').readUInt32BE(0);
    expect(second * 1000).toBeGreaterThan(Date.now());
    expect(second * 1000).toBeLessThanOrEqual(Date.now() + err.retryAfterMs! + 50);
    await sleep(second * 1000 + 20 - Date.now());
    // Its second: both places were given ahead, so a newcomer is refused, yet the ticket is honored.
    const walkIn = await upgrade(server);
    expect(walkIn.status).toBe(503);
    const honored = await upgrade(server, `&admit=${err.ticket}`);
    expect(honored.status).toBe(101);
    open.push(honored.client as TestClient);
    // The window for a reconnect after losing the node: its 3 sessions at its 2 a second, with 25 % slack.
    expect(await honored.client!.request({ op: 'ping' })).toMatchObject({ ok: true, reconnectWindowMs: 1875 });
    // Reused: not honored again.
    const reused = await upgrade(server, `&admit=${err.ticket}`);
    // (All three in the ticket's second: the next one would have room for newcomers again.)
    expect(Date.now()).toBeLessThan(second * 1000 + 1000);
    expect(reused.status).toBe(503);
    expect(reused.body.error?.code).toBe('RETRY_LATER');
    expect(await metricSum(server, 'c10m_admission_tickets_honored_total')).toBe(1);
    expect(await metricSum(server, 'c10m_admission_tickets_refused_total')).toBe(2);
    expect(await metricSum(server, 'c10m_admission_refused_total')).toBe(4);
    const jmx = (await (await fetch(server.adminUrl('/jmx'))).json()) as Record<string, number>;
    expect(jmx.AdmissionTicketsHonored).toBe(1);
    expect(jmx.AdmissionRefused).toBe(4);
  });
});
