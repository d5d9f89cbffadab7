// attachIpHash: a classic-BPF program on the SO_REUSEPORT group of several
// uWebSockets.js Apps in several worker threads sends every connection from
// one client address to the same App, at the index ipHashIndex predicts.
import * as net from 'node:net';
import { ipv6AnswersInNetns, UwsGroup, whoAnswers } from './helpers/native-uws-group';
import type * as NativeIo from '../native-io';

function loadWrapper(disabled: boolean): typeof NativeIo {
  const saved = process.env.C10M_NATIVE_DISABLED;
  if (disabled) process.env.C10M_NATIVE_DISABLED = '1';
  else delete process.env.C10M_NATIVE_DISABLED;
  let mod: typeof NativeIo | undefined;
  jest.isolateModules(() => {
    mod = require('../native-io') as typeof NativeIo;
  });
  if (saved === undefined) delete process.env.C10M_NATIVE_DISABLED;
  else process.env.C10M_NATIVE_DISABLED = saved;
  return mod!;
}

const native = loadWrapper(false);
const fallback = loadWrapper(true);
const WORKERS = 3;
// 48 loopback source addresses spread over a few /16s and /24s.
const ADDRESSES = Array.from({ length: 48 }, (_, i) => `127.${1 + (i % 3)}.${(i * 7) % 250}.${1 + ((i * 37) % 250)}`);

async function answersFor(port: number, addresses: string[], perAddress: number): Promise<Map<string, number[]>> {
  const seen = new Map<string, number[]>();
  for (const address of addresses) {
    const answers = await Promise.all(Array.from({ length: perAddress }, () => whoAnswers(port, address)));
    seen.set(address, answers);
  }
  return seen;
}

describe('attachIpHash (native)', () => {
  let group: UwsGroup;

  beforeAll(async () => {
    expect(native.nativeStatus().loaded).toBe(true);
    group = await UwsGroup.start(WORKERS);
  });
  afterAll(async () => {
    await group?.stop();
  });

  test('without the program, one address reaches several workers (the kernel hashes the 4-tuple)', async () => {
    const answers = await answersFor(group.port, ['127.0.0.77'], 24);
    expect(new Set(answers.get('127.0.0.77')).size).toBeGreaterThan(1);
  });

  test('with it, each address lands on worker ipHashIndex(address) every time, and all workers get some', async () => {
    const r = native.attachIpHash(group.port, WORKERS);
    expect(r).toMatchObject({ attached: true, sockets: WORKERS });
    if (!r.attached) throw new Error(r.reason);
    expect(r.fds).toEqual([r.fd]);

    const answers = await answersFor(group.port, ADDRESSES, 3);
    const perWorker = new Array(WORKERS).fill(0);
    for (const [address, got] of answers) {
      const expected = native.ipHashIndex(address, WORKERS);
      expect({ address, got }).toEqual({ address, got: [expected, expected, expected] });
      perWorker[expected]++;
    }
    for (const n of perWorker) expect(n).toBeGreaterThan(ADDRESSES.length / WORKERS / 3);
  });

  test('IPv6 clients (::1) are hashed too, on the same dual-stack group', async () => {
    const got = await Promise.all(Array.from({ length: 6 }, () => whoAnswers(group.port, '::1', '::1')));
    expect(got).toEqual(new Array(6).fill(native.ipHashIndex('::1', WORKERS)));
  });

  test('a restarted worker rejoins at the end: the last socket fills the hole, then the restarted one takes the last index', async () => {
    // Order before: [w0, w1, w2]. Closing w0 moves w2 into index 0: [w2, w1].
    await group.close(0);
    const byIndex = (i: number) => ADDRESSES.filter((a) => native.ipHashIndex(a, WORKERS) === i);
    const during = await answersFor(group.port, [...byIndex(0).slice(0, 4), ...byIndex(1).slice(0, 4)], 2);
    for (const [address, got] of during) {
      const index = native.ipHashIndex(address, WORKERS);
      expect({ address, got }).toEqual({ address, got: index === 0 ? [2, 2] : [1, 1] });
    }
    // Index 2 is past the end of a 2-socket group: the kernel falls back to its own hash.
    const orphan = await answersFor(group.port, byIndex(2).slice(0, 4), 2);
    for (const got of orphan.values()) for (const w of got) expect([1, 2]).toContain(w);

    // w0 listens again and joins last: [w2, w1, w0]. The program survived on the group.
    await group.listen(0);
    const after = await answersFor(group.port, ADDRESSES.slice(0, 24), 2);
    const workerAt = [2, 1, 0];
    for (const [address, got] of after) {
      const w = workerAt[native.ipHashIndex(address, WORKERS)];
      expect({ address, got }).toEqual({ address, got: [w, w] });
    }
  });

  test('when every socket closes the group and its program go: listening again needs attachIpHash again', async () => {
    for (let i = 0; i < WORKERS; i++) await group.close(i);
    for (let i = 0; i < WORKERS; i++) await group.listen(i);
    const unsteered = await answersFor(group.port, ['127.0.0.77'], 24);
    expect(new Set(unsteered.get('127.0.0.77')).size).toBeGreaterThan(1);

    expect(native.attachIpHash(group.port, WORKERS)).toMatchObject({ attached: true, sockets: WORKERS });
    const answers = await answersFor(group.port, ADDRESSES.slice(0, 24), 2);
    for (const [address, got] of answers) {
      const w = native.ipHashIndex(address, WORKERS);
      expect({ address, got }).toEqual({ address, got: [w, w] });
    }
  });

  test('more groups than listening sockets is refused with the count', () => {
    expect(() => native.attachIpHash(group.port, WORKERS + 1)).toThrow(
      expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/groups \(4\) is more than the 3 sockets/) }),
    );
  });
});

describe('attachIpHash over IPv6 (in a network namespace of its own)', () => {
  test('each /64 lands on worker ipHashIndex(address) every time, addresses of one /64 together, all workers used', async () => {
    // ::1 alone cannot tell: its first 64 bits are zero, so it hashes to what a failed load returns.
    const prefixes = Array.from({ length: 24 }, (_, i) => `2001:db8:${((i * 40503) & 0xffff).toString(16)}:${(i + 1).toString(16)}`);
    const addresses = [...prefixes.map((p, i) => `${p}::${i + 1}`), `${prefixes[0]}::abcd`, `${prefixes[0]}:ffff:1:2:3`];
    const { attached, answers } = await ipv6AnswersInNetns(addresses, WORKERS, 3);
    expect(attached).toMatchObject({ attached: true, sockets: WORKERS });
    const perWorker = new Array(WORKERS).fill(0);
    for (const address of addresses) {
      const expected = native.ipHashIndex(address, WORKERS);
      expect({ address, got: answers[address] }).toEqual({ address, got: [expected, expected, expected] });
      perWorker[expected]++;
    }
    expect(perWorker.every((n) => n > 0)).toBe(true);
    expect(answers[addresses[24]]).toEqual(answers[addresses[0]]);
    expect(answers[addresses[25]]).toEqual(answers[addresses[0]]);
  });
});

describe('attachIpHash bad input (native, then fallback)', () => {
  test.each([
    ['native', native],
    ['fallback', fallback],
  ])('%s: wrong types and out-of-range numbers throw the same errors', (_name, io) => {
    expect(() => io.attachIpHash('8080' as unknown as number, 2)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: 'The "port" argument must be of type number.' }),
    );
    expect(() => io.attachIpHash(8080, undefined as unknown as number)).toThrow(expect.objectContaining({ name: 'TypeError', message: 'The "groups" argument must be of type number.' }));
    expect(() => io.attachIpHash(70000, 2)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining('"port" is out of range') }));
    expect(() => io.attachIpHash(8080, 0)).toThrow(
      expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/"groups" is out of range\. It must be an integer >= 1 .* Received 0\./) }),
    );
    expect(() => io.attachIpHash(8080, 1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  test('native: a port nobody in this process listens on', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(() => native.attachIpHash(port, 1)).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_LISTENING', message: expect.stringContaining(`no socket of this process listens on TCP port ${port}`) }),
    );
  });

  test('native: a listener without SO_REUSEPORT (a plain Node server) is refused', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      expect(() => native.attachIpHash(port, 1)).toThrow(expect.objectContaining({ code: 'ERR_NO_REUSEPORT', message: expect.stringContaining('does not have SO_REUSEPORT') }));
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('fallback: valid arguments give {attached:false, reason}, not a throw', () => {
    const r = fallback.attachIpHash(8080, 4);
    expect(r.attached).toBe(false);
    if (r.attached) throw new Error('unreachable');
    expect(r.reason).toMatch(/C10M_NATIVE_DISABLED=1.*cannot attach a BPF program.*4-tuple hash/);
  });
});

describe('ipHashIndex', () => {
  test('IPv4-mapped IPv6 hashes as its IPv4 address; an IPv6 /64 hashes as one; bad input throws', () => {
    for (const a of ADDRESSES.slice(0, 8)) {
      expect(native.ipHashIndex(`::ffff:${a}`, 7)).toBe(native.ipHashIndex(a, 7));
    }
    expect(native.ipHashIndex('0:0:0:0:0:ffff:7f00:1', 7)).toBe(native.ipHashIndex('127.0.0.1', 7));
    expect(native.ipHashIndex('2001:db8:1:2::1', 1000)).toBe(native.ipHashIndex('2001:db8:1:2:ffff:eeee:dddd:cccc', 1000));
    const spread = new Set(Array.from({ length: 64 }, (_, i) => native.ipHashIndex(`2001:db8:${i.toString(16)}::1`, 8)));
    expect(spread.size).toBe(8);
    expect(() => native.ipHashIndex('not-an-ip', 2)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => native.ipHashIndex('127.0.0.1', 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});
