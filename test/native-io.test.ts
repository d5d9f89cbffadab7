// native-io through its wrapper, once with the addon and once with
// C10M_NATIVE_DISABLED=1 (the JS fallbacks): arenas and their stats, memory
// shared between worker threads, release on GC, descriptor limits, status,
// and bad input.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { types } from 'node:util';
import { Worker } from 'node:worker_threads';
import { DIST_NATIVE_IO, runNativeChild } from './helpers/native-child';
import type * as NativeIo from '../native-io';

/** A fresh copy of the wrapper, loaded with these environment variables set (undefined: unset). */
function loadWrapperWith(vars: Record<string, string | undefined>): typeof NativeIo {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  let mod: typeof NativeIo | undefined;
  try {
    jest.isolateModules(() => {
      mod = require('../native-io') as typeof NativeIo;
    });
  } finally {
    apply(saved);
  }
  return mod!;
}

function loadWrapper(disabled: boolean): typeof NativeIo {
  return loadWrapperWith({ C10M_NATIVE_DISABLED: disabled ? '1' : undefined });
}

const native = loadWrapper(false);
const fallback = loadWrapper(true);
const MiB = 1 << 20;

function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** The path the addon must take for `bytes` on this machine right now. */
function expectedNativePath(bytes: number): 'hugetlb' | 'thp' | 'normal' {
  const hugePageBytes = meminfo('Hugepagesize') * 1024;
  const roomBytes = (meminfo('HugePages_Free') - meminfo('HugePages_Rsvd')) * hugePageBytes;
  if (roomBytes >= Math.ceil(bytes / hugePageBytes) * hugePageBytes) return 'hugetlb';
  const thp = /\[(always|madvise)\]/.test(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));
  const pmdBytes = Number(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', 'utf8'));
  return thp && bytes >= pmdBytes ? 'thp' : 'normal';
}

describe('nativeStatus', () => {
  test('the addon is built and loaded; C10M_NATIVE_DISABLED=1 turns it off and says so', () => {
    expect(native.nativeStatus()).toEqual({
      loaded: true,
      error: null,
      disabledByEnv: false,
      addonPath: expect.stringMatching(/build\/Release\/c10m_native\.node$/),
    });
    expect(fallback.nativeStatus()).toEqual({
      loaded: false,
      error: expect.stringContaining('C10M_NATIVE_DISABLED=1'),
      disabledByEnv: true,
      addonPath: null,
    });
  });

  test('an addon that is missing or broken: the fallbacks run and nativeStatus says why', () => {
    const missing = loadWrapperWith({ C10M_NATIVE_DISABLED: undefined, C10M_NATIVE_ADDON: '/nonexistent/c10m_native.node' });
    expect(missing.nativeStatus()).toEqual({
      loaded: false,
      error: expect.stringMatching(/^\/nonexistent\/c10m_native\.node does not exist: the addon was not built/),
      disabledByEnv: false,
      addonPath: '/nonexistent/c10m_native.node',
    });
    expect(missing.allocShared(4096).path).toBe('js');
    expect(missing.attachIpHash(8080, 2)).toEqual({ attached: false, reason: expect.stringContaining('does not exist') });

    const junk = `${os.tmpdir()}/c10m-native-junk-${process.pid}.node`;
    fs.writeFileSync(junk, 'not a shared object');
    try {
      const broken = loadWrapperWith({ C10M_NATIVE_DISABLED: undefined, C10M_NATIVE_ADDON: junk });
      expect(broken.nativeStatus()).toMatchObject({ loaded: false, disabledByEnv: false, error: expect.stringMatching(/invalid ELF header|file too short/) });
      expect(broken.raiseNoFileLimit().reason).toMatch(/cannot call setrlimit/);
    } finally {
      fs.unlinkSync(junk);
    }
  });
});

describe('allocShared', () => {
  test('native: takes the best path the system offers and counts its bytes', () => {
    for (const bytes of [1, 4096, 100_000, 3 * MiB + 5]) {
      const before = native.arenaStats();
      const arena = native.allocShared(bytes);
      const path = expectedNativePath(bytes);
      expect({ bytes, path: arena.path }).toEqual({ bytes, path });
      // Not instanceof: jest runs tests in their own realm, the addon makes buffers in node's.
      expect(types.isSharedArrayBuffer(arena.buffer)).toBe(true);
      expect(arena.buffer.byteLength).toBe(bytes);
      const unit = path === 'hugetlb' ? meminfo('Hugepagesize') * 1024 : 4096;
      expect(arena.bytes).toBe(Math.ceil(bytes / unit) * unit);
      const view = new Uint8Array(arena.buffer);
      expect(view.every((b) => b === 0)).toBe(true);
      view[bytes - 1] = 0xab;
      expect(view[bytes - 1]).toBe(0xab);
      const key = `${path}Bytes` as 'hugetlbBytes' | 'thpBytes' | 'normalBytes';
      // The counters are process-wide: an arena of an earlier test collected in between makes
      // the difference smaller. Such a collection is rare in a window this short: try again.
      let delta = native.arenaStats()[key] - before[key];
      const held: unknown[] = [arena];
      for (let attempt = 0; attempt < 5 && delta !== arena.bytes; attempt++) {
        const b0 = native.arenaStats();
        const again = native.allocShared(bytes);
        held.push(again);
        delta = native.arenaStats()[key] - b0[key];
      }
      expect({ bytes, delta }).toEqual({ bytes, delta: arena.bytes });
      held.length = 0; // (kept until here, so that none of them is collected during the attempts)
    }
  });

  test('native: hugePages:false asks for ordinary pages', () => {
    const arena = native.allocShared(4 * MiB, { hugePages: false });
    expect(arena.path).toBe('normal');
    expect(arena.bytes).toBe(4 * MiB);
  });

  test('native: past the hugetlb room, an arena gets transparent huge pages once touched (or ordinary pages without THP)', () => {
    const hugePageBytes = meminfo('Hugepagesize') * 1024;
    const roomBytes = (meminfo('HugePages_Free') - meminfo('HugePages_Rsvd')) * hugePageBytes;
    const bytes = roomBytes + 8 * MiB;
    const anonHugeKiB = () => Number(/^AnonHugePages:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]);
    const before = anonHugeKiB();
    const arena = native.allocShared(bytes);
    new Uint8Array(arena.buffer).fill(1);
    const gainedKiB = anonHugeKiB() - before;
    if (expectedNativePath(bytes) === 'thp') {
      expect(arena.path).toBe('thp');
      // At least one 2 MiB page, allowing for the kernel finding no free huge page for some.
      expect(gainedKiB).toBeGreaterThanOrEqual(2048);
    } else {
      expect(arena.path).toBe('normal');
      expect(gainedKiB).toBe(0);
    }
  });

  test('fallback: a plain SharedArrayBuffer, path "js", counted per thread', () => {
    const before = fallback.arenaStats();
    const arena = fallback.allocShared(3 * MiB + 5);
    expect(arena.path).toBe('js');
    expect(arena.bytes).toBe(3 * MiB + 5);
    expect(arena.buffer.byteLength).toBe(3 * MiB + 5);
    const after = fallback.arenaStats();
    expect(after.jsBytes - before.jsBytes).toBe(3 * MiB + 5);
    expect(after.hugetlbBytes + after.thpBytes + after.normalBytes).toBe(0);
  });

  test.each([
    ['native', native],
    ['fallback', fallback],
  ])('%s: bad sizes and types throw the same clear errors', (_name, io) => {
    const total = os.totalmem();
    const outOfRange = (received: string) =>
      expect.objectContaining({
        name: 'RangeError',
        code: 'ERR_OUT_OF_RANGE',
        message: `The value of "bytes" is out of range. It must be an integer >= 1 and <= ${total} (the physical memory). Received ${received}.`,
      });
    expect(() => io.allocShared(0)).toThrow(outOfRange('0'));
    expect(() => io.allocShared(-4096)).toThrow(outOfRange('-4096'));
    expect(() => io.allocShared(1.5)).toThrow(outOfRange('1.5'));
    expect(() => io.allocShared(NaN)).toThrow(outOfRange('NaN'));
    expect(() => io.allocShared(Infinity)).toThrow(outOfRange('Infinity'));
    expect(() => io.allocShared(2 ** 50)).toThrow(outOfRange(String(2 ** 50)));
    expect(() => io.allocShared('4096' as unknown as number)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: 'The "bytes" argument must be of type number.' }),
    );
    expect(() => io.allocShared(undefined as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => io.allocShared(4096, { hugePages: 'yes' as unknown as boolean })).toThrow(
      expect.objectContaining({ name: 'TypeError', message: 'The "hugePages" argument must be of type boolean.' }),
    );
    expect(() => io.allocShared(4096, null as unknown as object)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

// Two threads take turns through one buffer: each waits (Atomics.wait) for
// the other's turn number, checks the value and the block the other wrote
// with plain stores, and answers. Plain JS: worker bodies are not compiled.
const PING_PONG = `
const { workerData, parentPort } = require('node:worker_threads');
const { buffer, role, rounds } = workerData;
const turn = new Int32Array(buffer, 0, 4);
const block = new Uint8Array(buffer, 4096);
const mine = role === 'ping' ? 1 : 2, theirs = 3 - mine;
// One deadline for the whole run, not a short one per turn: on a loaded
// machine (CI runs other suites beside this one) a thread may not be
// scheduled for seconds, and that is not what this test is about.
const deadline = Date.now() + 60000;
function waitFor(value) {
  while (Atomics.load(turn, 0) !== value) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(role + ' timed out waiting for turn ' + value + ' (turn is ' + Atomics.load(turn, 0) + ')');
    Atomics.wait(turn, 0, Atomics.load(turn, 0), Math.min(left, 1000));
  }
}
for (let i = 1; i <= rounds; i++) {
  const myTurn = role === 'ping' ? 2 * i - 1 : 2 * i;
  if (role === 'pong') {
    waitFor(myTurn - 1);
    if (turn[theirs] !== i * 3) throw new Error('pong saw ' + turn[theirs] + ' in round ' + i);
    const fill = block[(i * 7919) % block.length];
    if (fill !== (i & 0xff)) throw new Error('pong saw block byte ' + fill + ' in round ' + i);
  }
  turn[mine] = role === 'ping' ? i * 3 : i * 5;
  if (role === 'ping') block.fill(i & 0xff);
  Atomics.store(turn, 0, myTurn);
  Atomics.notify(turn, 0);
  if (role === 'ping') {
    waitFor(myTurn + 1);
    if (turn[theirs] !== i * 5) throw new Error('ping saw ' + turn[theirs] + ' in round ' + i);
  }
}
parentPort.postMessage({ done: role });
`;

function runWorker(code: string, workerData: unknown, env: NodeJS.ProcessEnv = process.env): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const messages: unknown[] = [];
    const w = new Worker(code, { eval: true, workerData, env });
    w.on('message', (m) => messages.push(m));
    w.on('error', reject);
    w.on('exit', (code) => (code === 0 ? resolve(messages) : reject(new Error(`worker exited with ${code}`))));
  });
}

describe('allocSharedAsync', () => {
  const anonKiB = () => Number(/^Anonymous:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]);

  test('native: resolves with a zeroed arena whose pages are already in memory (faulted in off this thread)', async () => {
    // The process's anonymous memory is the witness; arenas of earlier tests being collected
    // meanwhile can hide a gain, so a reading is taken again (a new arena) up to 5 times.
    // Other memory of this process may grow or shrink during a reading, so each figure is read 5
    // times (a new arena each time) and the clearest reading counts: the largest gain for an arena
    // that should be resident, the smallest for the control.
    const gainsOf = async (make: () => Promise<unknown> | unknown): Promise<{ max: number; min: number; held: unknown[] }> => {
      const held: unknown[] = [];
      const gains: number[] = [];
      for (let attempt = 0; attempt < 5; attempt++) {
        const before = anonKiB();
        held.push(await make());
        gains.push(anonKiB() - before);
      }
      return { max: Math.max(...gains), min: Math.min(...gains), held };
    };
    // The control: allocShared maps the same memory and nothing is resident until it is written.
    const control = await gainsOf(() => native.allocShared(8 * MiB));
    expect(control.min).toBeLessThan(4 * 1024);
    for (const [bytes, hugePages] of [
      [8 * MiB, true],
      [8 * MiB, false],
      [100_000, true],
    ] as const) {
      // Resident before this thread has touched a byte of it.
      const gained = await gainsOf(() => native.allocSharedAsync(bytes, { hugePages }));
      expect({ bytes, hugePages, resident: gained.max >= (bytes / 1024) * 0.9 }).toEqual({ bytes, hugePages, resident: true });
      const arena = await native.allocSharedAsync(bytes, { hugePages });
      expect(arena.path).toBe(hugePages ? expectedNativePath(bytes) : 'normal');
      expect(types.isSharedArrayBuffer(arena.buffer)).toBe(true);
      expect(arena.buffer.byteLength).toBe(bytes);
      const view = new Uint8Array(arena.buffer);
      expect(view.every((b) => b === 0)).toBe(true);
      view[bytes - 1] = 7;
      expect(view[bytes - 1]).toBe(7);
    }
  });

  test('native: many at once, each its own memory', async () => {
    const arenas = await Promise.all(Array.from({ length: 8 }, () => native.allocSharedAsync(2 * MiB)));
    arenas.forEach((a, i) => new Uint32Array(a.buffer).fill(i + 1));
    arenas.forEach((a, i) => expect(new Uint32Array(a.buffer).every((x) => x === i + 1)).toBe(true));
  });

  test('fallback: resolves with a plain SharedArrayBuffer, path "js"', async () => {
    const arena = await fallback.allocSharedAsync(3 * MiB + 5);
    expect([arena.path, arena.buffer.byteLength]).toEqual(['js', 3 * MiB + 5]);
  });

  test.each([
    ['native', native],
    ['fallback', fallback],
  ])("%s: bad arguments throw at once, with allocShared's errors", (_name, io) => {
    expect(() => io.allocSharedAsync(0)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => io.allocSharedAsync('4096' as unknown as number)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: 'The "bytes" argument must be of type number.' }),
    );
    expect(() => io.allocSharedAsync(4096, { hugePages: 1 as unknown as boolean })).toThrow(
      expect.objectContaining({ name: 'TypeError', message: 'The "hugePages" argument must be of type boolean.' }),
    );
  });
});

describe('arenas are shared between worker threads', () => {
  test.each([
    ['native', native],
    ['fallback', fallback],
  ])(
    "%s: two workers see each other's writes through one buffer (Atomics.wait/notify, 200 rounds)",
    async (_name, io) => {
      const arena = io.allocShared(4 * MiB + 4096);
      const rounds = 200;
      const [ping, pong] = await Promise.all([runWorker(PING_PONG, { buffer: arena.buffer, role: 'ping', rounds }), runWorker(PING_PONG, { buffer: arena.buffer, role: 'pong', rounds })]);
      expect([ping, pong]).toEqual([[{ done: 'ping' }], [{ done: 'pong' }]]);
      // And the main thread sees the last writes of both.
      const turn = new Int32Array(arena.buffer, 0, 4);
      expect([turn[0], turn[1], turn[2]]).toEqual([2 * rounds, rounds * 3, rounds * 5]);
      expect(new Uint8Array(arena.buffer, 4096)[12345]).toBe(rounds & 0xff);
    },
    90000,
  );

  test('native: an arena made in a worker (the addon loaded there) outlives the worker', async () => {
    const code = `
      const { parentPort } = require('node:worker_threads');
      const io = require(${JSON.stringify(DIST_NATIVE_IO)});
      const arena = io.allocShared(3 * 1024 * 1024);
      new Uint32Array(arena.buffer).fill(0xc0ffee);
      parentPort.postMessage({ arena, status: io.nativeStatus() });
    `;
    const before = native.arenaStats();
    const env = { ...process.env };
    delete env.C10M_NATIVE_DISABLED;
    const [msg] = (await runWorker(code, null, env)) as [{ arena: NativeIo.SharedArena; status: NativeIo.NativeStatus }];
    expect(msg.status.loaded).toBe(true);
    expect(msg.arena.path).toBe(expectedNativePath(3 * MiB));
    // The worker is gone; its buffer is still ours, and still counted process-wide.
    const words = new Uint32Array(msg.arena.buffer);
    expect(words[0]).toBe(0xc0ffee);
    expect(words[words.length - 1]).toBe(0xc0ffee);
    words[7] = 42;
    expect(words[7]).toBe(42);
    const after = native.arenaStats();
    const total = (s: NativeIo.ArenaStats) => s.hugetlbBytes + s.thpBytes + s.normalBytes;
    expect(total(after) - total(before)).toBe(msg.arena.bytes);
  });
});

describe('arenas are released when collected', () => {
  test.each([false, true])('C10M_NATIVE_DISABLED=%s: the byte counters fall back after the last reference goes', async (disabled) => {
    const r = await runNativeChild<{ path: string; before: number; during: number; after: number }>(
      `
      const total = (s) => s.hugetlbBytes + s.thpBytes + s.normalBytes + s.jsBytes;
      const before = total(io.arenaStats());
      // In a plain function: a suspended async function keeps stale registers alive.
      const path = (() => {
        const arenas = [io.allocShared(8 * 1024 * 1024), io.allocShared(4096), io.allocShared(5 * 1024 * 1024, { hugePages: false })];
        for (const a of arenas) new Uint8Array(a.buffer).fill(7);
        return arenas[0].path;
      })();
      const during = total(io.arenaStats());
      let after = during;
      for (let i = 0; i < 100 && after !== before; i++) {
        globalThis.gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
        after = total(io.arenaStats());
      }
      return { path, before, during, after };
      `,
      { disabled, nodeArgs: ['--expose-gc'] },
    );
    expect(r.path).toBe(disabled ? 'js' : expectedNativePath(8 * MiB));
    expect(r.during - r.before).toBeGreaterThanOrEqual(13 * MiB + 4096);
    expect(r.after).toBe(r.before);
  });
});

function procLimits(): { soft: number; hard: number } {
  const m = /^Max open files\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))!;
  return { soft: Number(m[1]), hard: Number(m[2]) };
}

describe('descriptor limits', () => {
  test('native: raiseNoFileLimit lifts a lowered soft limit to the hard one', async () => {
    const { hard } = procLimits();
    const r = await runNativeChild<{ lowered: number; raised: NativeIo.NoFileLimit; report: number }>(
      `await ready();
       const lowered = io.limitsReport().nofileSoft;
       return { lowered, raised: io.raiseNoFileLimit(), report: io.limitsReport().nofileSoft };`,
      { disabled: false, onReady: (pid) => void execFileSync('prlimit', [`--pid=${pid}`, `--nofile=1024:${hard}`]) },
    );
    expect(r).toEqual({ lowered: 1024, raised: { soft: hard, hard, previousSoft: 1024, reason: null }, report: hard });
  });

  test('fallback: reports the lowered limit honestly and says it could not raise it', async () => {
    const { hard } = procLimits();
    const r = await runNativeChild<{ raised: NativeIo.NoFileLimit; report: NativeIo.LimitsReport }>(`await ready(); return { raised: io.raiseNoFileLimit(), report: io.limitsReport() };`, {
      disabled: true,
      onReady: (pid) => void execFileSync('prlimit', [`--pid=${pid}`, `--nofile=1024:${hard}`]),
    });
    expect(r.raised).toEqual({ soft: 1024, hard, previousSoft: 1024, reason: expect.stringMatching(/cannot call setrlimit, so the open-file soft limit stays at 1024/) });
    expect(r.report).toMatchObject({ nofileSoft: 1024, nofileHard: hard, nofileSource: '/proc/self/limits' });
  });

  test('limitsReport: the kernel settings as one object, the same on both paths', () => {
    const sysctl = (name: string) => fs.readFileSync(`/proc/sys/${name}`, 'utf8').trim().split(/\s+/).map(Number);
    const report = native.limitsReport();
    const { soft, hard } = procLimits();
    expect(report).toEqual({
      nofileSoft: soft,
      nofileHard: hard,
      nofileSource: 'getrlimit',
      fsNrOpen: sysctl('fs/nr_open')[0],
      fsFileMax: sysctl('fs/file-max')[0],
      somaxconn: sysctl('net/core/somaxconn')[0],
      ipLocalPortRange: sysctl('net/ipv4/ip_local_port_range'),
      tcpRmemBytes: sysctl('net/ipv4/tcp_rmem'),
      tcpWmemBytes: sysctl('net/ipv4/tcp_wmem'),
      tcpMemPages: sysctl('net/ipv4/tcp_mem'),
      nfConntrackMax: fs.existsSync('/proc/sys/net/netfilter/nf_conntrack_max') ? sysctl('net/netfilter/nf_conntrack_max')[0] : null,
      nrHugepages: sysctl('vm/nr_hugepages')[0],
      hugepagesFree: meminfo('HugePages_Free'),
      hugepageSizeBytes: meminfo('Hugepagesize') * 1024,
      thpMode: /\[(\w+)\]/.exec(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))![1],
    });
    expect(fallback.limitsReport()).toEqual({ ...report, nofileSource: '/proc/self/limits' });
  });
});
