// Ring hand-off between two worker threads: latency (idle consumer woken by
// the doorbell, busy consumer at paced rates), cost per record at several
// record sizes, and the two ways a full ring's spill can be retried.
//
//   npm run lab:build && node dist-lab/bench/lab/ring-latency.js [--quick]
//
// Prints a table and writes bench/results/ring-latency-<date>.json, which
// starts with an environment header. Producer and consumer each run in their
// own worker thread; the main thread only orchestrates. Latency is one-way:
// the producer stamps each record with the monotonic clock (shared by all
// threads of the process) and the consumer subtracts on arrival.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import * as hdr from 'hdr-histogram-js';
import { Doorbell } from '../../shm/doorbell';
import { Ring, RingConsumer, RingProducer } from '../../shm/ring';
import { RingInbox } from '../../shm/ring-inbox';
import { RingSender, SendStatus } from '../../shm/ring-sender';
import { flag } from './args';
import { packageRoot } from '../../native-io/package-root';
import { envHeader } from '../env';

type Mode = 'flat' | 'paced' | 'spaced';

interface ConsumerData {
  role: 'consumer';
  ringSab: SharedArrayBuffer;
  bellSab: SharedArrayBuffer;
  n: number;
  base: bigint;
  latency: boolean;
  delayStartMs: number;
  maxRecordsPerTurn: number;
}
interface ProducerData {
  role: 'producer';
  ringSab: SharedArrayBuffer;
  bellSab: SharedArrayBuffer;
  n: number;
  base: bigint;
  size: number;
  mode: Mode;
  ratePerSec: number;
  gapMs: number;
  stamp: boolean;
  retry: 'notify' | 'immediate';
}
interface ConsumerResult {
  count: number;
  seqErrors: number;
  lastNs: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  wakeups: number;
  sleeps: number;
  turns: number;
}
interface ProducerResult {
  startNs: number;
  sentNs: number;
  drainedNs: number;
  fullEvents: number;
  spilledRecords: number;
  flushAttempts: number;
  notifies: number;
  /** Event-loop utilisation of the producer thread between its last send and the spill's drain. */
  waitElu: number;
  waitMs: number;
}

// ---- worker side ----

function nowNs(base: bigint): number {
  return Number(process.hrtime.bigint() - base);
}

function runConsumer(d: ConsumerData): void {
  const inbox = new RingInbox(new Doorbell(d.bellSab), { keepAlive: true, maxRecordsPerTurn: d.maxRecordsPerTurn });
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600e9, numberOfSignificantValueDigits: 3 });
  let count = 0;
  let seqErrors = 0;
  let view: DataView | null = null;
  const consumer = inbox.add(d.ringSab, (_data, off, _len) => {
    const v = view as DataView;
    if (v.getUint32(off + 8, true) !== count) seqErrors++;
    if (d.latency) hist.recordValue(Math.max(1, nowNs(d.base) - v.getFloat64(off, true)));
    if (++count === d.n) {
      const lastNs = nowNs(d.base);
      inbox.close();
      const r: ConsumerResult = {
        count,
        seqErrors,
        lastNs,
        p50: hist.getValueAtPercentile(50),
        p90: hist.getValueAtPercentile(90),
        p99: hist.getValueAtPercentile(99),
        max: hist.maxValue,
        mean: hist.mean,
        wakeups: inbox.wakeups,
        sleeps: inbox.sleeps,
        turns: inbox.turns,
      };
      parentPort!.postMessage(r);
    }
  });
  view = consumer.view;
  setTimeout(() => {
    inbox.start();
    parentPort!.postMessage('ready');
  }, d.delayStartMs);
}

async function runProducer(d: ProducerData): Promise<void> {
  const bell = new Doorbell(d.bellSab);
  const producer = new RingProducer(d.ringSab, 0, bell);
  let drained: (() => void) | null = null;
  const sender = new RingSender(producer, {
    retry: d.retry,
    maxSpillBytes: 256 * 1024,
    onDrain: () => {
      const r = drained;
      drained = null;
      if (r) r();
    },
  });
  const payload = new Uint8Array(d.size);
  const pv = new DataView(payload.buffer);
  const yieldNow = (): Promise<void> => new Promise((r) => setImmediate(r));
  const untilDrained = (): Promise<void> => new Promise((r) => (drained = r));
  const startNs = nowNs(d.base);
  let i = 0;
  const sendOne = (): number => {
    pv.setUint32(8, i, true);
    if (d.stamp) pv.setFloat64(0, nowNs(d.base), true);
    i++;
    return sender.send(payload);
  };
  if (d.mode === 'flat') {
    while (i < d.n) {
      const end = Math.min(d.n, i + 1024);
      let backpressure = false;
      while (i < end) if (sendOne() === SendStatus.BACKPRESSURE) backpressure = true;
      // The spill may have drained synchronously during a later send of the batch.
      if (backpressure && sender.spillRecords > 0) await untilDrained();
      else await yieldNow();
    }
  } else if (d.mode === 'paced') {
    while (i < d.n) {
      const due = Math.min(d.n, Math.floor(((nowNs(d.base) - startNs) * d.ratePerSec) / 1e9) + 1);
      while (i < due) sendOne();
      await yieldNow();
    }
  } else {
    while (i < d.n) {
      sendOne();
      await new Promise((r) => setTimeout(r, d.gapMs));
    }
  }
  const sentNs = nowNs(d.base);
  const elu0 = performance.eventLoopUtilization();
  if (sender.spillRecords > 0) await untilDrained();
  const elu = performance.eventLoopUtilization(elu0);
  const r: ProducerResult = {
    startNs,
    sentNs,
    drainedNs: nowNs(d.base),
    fullEvents: sender.fullEvents,
    spilledRecords: sender.spilledRecords,
    flushAttempts: sender.flushAttempts,
    notifies: bell.notifies,
    waitElu: elu.utilization,
    waitMs: elu.idle + elu.active,
  };
  sender.close();
  parentPort!.postMessage(r);
}

// ---- orchestration ----

interface Scenario {
  ringBytes: number;
  n: number;
  size: number;
  mode: Mode;
  ratePerSec?: number;
  gapMs?: number;
  latency: boolean;
  retry?: 'notify' | 'immediate';
  delayStartMs?: number;
  maxRecordsPerTurn?: number;
}

function once<T>(w: Worker, skipReady = false): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (skipReady && m === 'ready') return;
      w.off('message', onMessage);
      resolve(m as T);
    };
    w.on('message', onMessage);
    w.once('error', reject);
  });
}

async function runScenario(s: Scenario): Promise<{ consumer: ConsumerResult; producer: ProducerResult }> {
  const ringSab = Ring.create(s.ringBytes);
  const bellSab = Doorbell.create();
  const base = process.hrtime.bigint();
  const cdata: ConsumerData = {
    role: 'consumer',
    ringSab,
    bellSab,
    n: s.n,
    base,
    latency: s.latency,
    delayStartMs: s.delayStartMs ?? 0,
    maxRecordsPerTurn: s.maxRecordsPerTurn ?? 1024,
  };
  const consumerWorker = new Worker(__filename, { workerData: cdata });
  const consumerDone = once<ConsumerResult>(consumerWorker, true);
  if (!s.delayStartMs) await once<string>(consumerWorker);
  // Let the consumer fall asleep before the first record.
  await new Promise((r) => setTimeout(r, 20));
  const pdata: ProducerData = {
    role: 'producer',
    ringSab,
    bellSab,
    n: s.n,
    base,
    size: s.size,
    mode: s.mode,
    ratePerSec: s.ratePerSec ?? 0,
    gapMs: s.gapMs ?? 0,
    stamp: s.latency,
    retry: s.retry ?? 'notify',
  };
  const producerWorker = new Worker(__filename, { workerData: pdata });
  const [consumer, producer] = await Promise.all([consumerDone, once<ProducerResult>(producerWorker)]);
  await Promise.all([consumerWorker.terminate(), producerWorker.terminate()]);
  if (consumer.count !== s.n || consumer.seqErrors !== 0) throw new Error(`lost or reordered records: ${JSON.stringify(consumer)}`);
  return { consumer, producer };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const repoRoot = packageRoot;

const us = (ns: number): string => (ns / 1000).toFixed(1);

async function main(): Promise<void> {
  const quick = flag('quick');
  const reps = quick ? 1 : 3;
  const env = envHeader(packageRoot());
  const result: Record<string, unknown> = { benchmark: 'ring-latency', environment: env };
  console.log(`ring-latency: ${env.cpu}, ${env.cores} cores, node ${env.node}, ${env.kernel}, commit ${env.gitCommit}`);

  // 1. Latency. Idle: one record per ms, the consumer asleep before each. Busy: paced streams.
  const latency: Record<string, unknown>[] = [];
  const latencyCases: { name: string; s: Scenario }[] = [
    { name: 'idle (woken each record, 1/ms)', s: { ringBytes: 1 << 16, n: quick ? 500 : 3000, size: 64, mode: 'spaced', gapMs: 1, latency: true } },
    // The gap of bench/hop-latency.ts at 200 msg/s: long enough for an idle CPU to go to sleep between records.
    { name: 'idle (woken each record, 1 per 5 ms)', s: { ringBytes: 1 << 16, n: quick ? 300 : 1000, size: 64, mode: 'spaced', gapMs: 5, latency: true } },
    { name: 'busy 100k rec/s', s: { ringBytes: 1 << 20, n: quick ? 100_000 : 300_000, size: 64, mode: 'paced', ratePerSec: 100_000, latency: true } },
    { name: 'busy 500k rec/s', s: { ringBytes: 1 << 20, n: quick ? 500_000 : 1_500_000, size: 64, mode: 'paced', ratePerSec: 500_000, latency: true } },
    { name: 'busy 1M rec/s', s: { ringBytes: 1 << 20, n: quick ? 1_000_000 : 3_000_000, size: 64, mode: 'paced', ratePerSec: 1_000_000, latency: true } },
  ];
  console.log('\nhand-off latency, 64-byte records (one-way, microseconds)');
  console.log('case                              rate/s     p50     p90     p99      max   wake-ups/record  spilled');
  for (const { name, s } of latencyCases) {
    const { consumer: c, producer: p } = await runScenario(s);
    const rate = s.n / ((p.sentNs - p.startNs) / 1e9);
    const row = {
      case: name,
      records: s.n,
      achievedRatePerSec: Math.round(rate),
      p50Us: c.p50 / 1000,
      p90Us: c.p90 / 1000,
      p99Us: c.p99 / 1000,
      maxUs: c.max / 1000,
      meanUs: c.mean / 1000,
      wakeupsPerRecord: c.wakeups / s.n,
      notifies: p.notifies,
      spilledRecords: p.spilledRecords,
    };
    latency.push(row);
    console.log(
      `${name.padEnd(32)} ${String(Math.round(rate)).padStart(8)} ${us(c.p50).padStart(7)} ${us(c.p90).padStart(7)} ${us(c.p99).padStart(7)} ${us(c.max).padStart(8)} ${row.wakeupsPerRecord.toFixed(4).padStart(16)} ${String(p.spilledRecords).padStart(8)}`,
    );
  }
  result.latency = latency;

  // 2. Cost per record: flat-out producer, 1 MiB ring, RingSender.send (one copy into the ring).
  const throughput: Record<string, unknown>[] = [];
  const sizes: [number, number][] = [
    [16, 2_000_000],
    [64, 2_000_000],
    [256, 1_000_000],
    [1024, 500_000],
    [4096, 200_000],
  ];
  console.log(`\ncost per record, flat out, 1 MiB ring (median of ${reps}, [min..max])`);
  console.log('payload bytes      records/s            ns/record   MB/s    wake-ups/record  full events  spilled');
  for (const [size, n0] of sizes) {
    const n = quick ? Math.floor(n0 / 4) : n0;
    const rates: number[] = [];
    let last: { consumer: ConsumerResult; producer: ProducerResult } | null = null;
    for (let r = 0; r < reps; r++) {
      last = await runScenario({ ringBytes: 1 << 20, n, size, mode: 'flat', latency: false });
      rates.push(n / ((last.consumer.lastNs - last.producer.startNs) / 1e9));
    }
    const rate = median(rates);
    const l = last as { consumer: ConsumerResult; producer: ProducerResult };
    const row = {
      payloadBytes: size,
      records: n,
      recordsPerSec: Math.round(rate),
      recordsPerSecMin: Math.round(Math.min(...rates)),
      recordsPerSecMax: Math.round(Math.max(...rates)),
      nsPerRecord: 1e9 / rate,
      mbPerSec: (rate * size) / 1e6,
      wakeupsPerRecord: l.consumer.wakeups / n,
      fullEvents: l.producer.fullEvents,
      spilledRecords: l.producer.spilledRecords,
    };
    throughput.push(row);
    console.log(
      `${String(size).padStart(13)} ${String(row.recordsPerSec).padStart(14)} [${Math.round(Math.min(...rates))}..${Math.round(Math.max(...rates))}] ${row.nsPerRecord.toFixed(0).padStart(6)} ${row.mbPerSec.toFixed(0).padStart(6)} ${row.wakeupsPerRecord.toFixed(5).padStart(16)} ${String(row.fullEvents).padStart(12)} ${String(row.spilledRecords).padStart(8)}`,
    );
  }
  result.throughput = throughput;

  // 3. CPU cost per record without a second thread: write a batch, read it back, median over batches.
  // Robust to other load on the machine (a preempted batch lands in the tail, not the median).
  const cpu: Record<string, unknown>[] = [];
  console.log('\nCPU cost per record on one thread (RingSender.send copy + commit, then RingConsumer.read), median batch of 256');
  console.log('payload bytes   write ns/record   read ns/record   total ns/record');
  for (const [size] of sizes) {
    const sab = Ring.create(1 << 22);
    const sender = new RingSender(new RingProducer(sab, 0, new Doorbell(Doorbell.create())));
    const consumer = new RingConsumer(sab);
    const payload = new Uint8Array(size);
    let sum = 0;
    const handler = (data: Uint8Array, off: number): void => {
      sum += data[off];
    };
    const batch = 256;
    const batches = quick ? 500 : 4000;
    const w: number[] = [];
    const r: number[] = [];
    for (let b = 0; b < batches; b++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < batch; i++) sender.send(payload);
      const t1 = process.hrtime.bigint();
      consumer.read(handler);
      const t2 = process.hrtime.bigint();
      if (b >= batches / 10) {
        w.push(Number(t1 - t0) / batch);
        r.push(Number(t2 - t1) / batch);
      }
    }
    if (sender.spilledRecords !== 0 || sum !== 0) throw new Error('unexpected spill');
    const row = { payloadBytes: size, writeNsPerRecord: median(w), readNsPerRecord: median(r), totalNsPerRecord: median(w) + median(r) };
    cpu.push(row);
    console.log(`${String(size).padStart(13)} ${row.writeNsPerRecord.toFixed(1).padStart(17)} ${row.readNsPerRecord.toFixed(1).padStart(16)} ${row.totalNsPerRecord.toFixed(1).padStart(17)}`);
  }
  result.cpuPerRecord = cpu;

  // 4. Spill retry: 'notify' (sleep on the ring's space word) vs 'immediate' (setImmediate loop).
  const retry: Record<string, unknown>[] = [];
  console.log('\nfull ring: spill retry by space notification vs setImmediate (4 KiB ring, 256-byte records)');
  console.log('retry      case                          records/s  full events  spilled  flush attempts  producer ELU while waiting');
  for (const mode of ['notify', 'immediate'] as const) {
    const n = quick ? 50_000 : 200_000;
    const flat = await runScenario({ ringBytes: 4096, n, size: 256, mode: 'flat', latency: false, retry: mode, maxRecordsPerTurn: 64 });
    const flatRate = n / ((flat.consumer.lastNs - flat.producer.startNs) / 1e9);
    // A consumer that starts 500 ms late: what the producer burns while its spill waits.
    const stall = await runScenario({ ringBytes: 4096, n: 1000, size: 256, mode: 'flat', latency: false, retry: mode, delayStartMs: 500 });
    for (const [name, x, rate] of [
      ['flat out, busy consumer', flat, flatRate],
      ['consumer stalled 500 ms', stall, NaN],
    ] as const) {
      const row = {
        retry: mode,
        case: name,
        recordsPerSec: Number.isNaN(rate) ? null : Math.round(rate),
        fullEvents: x.producer.fullEvents,
        spilledRecords: x.producer.spilledRecords,
        flushAttempts: x.producer.flushAttempts,
        producerEluWhileWaiting: x.producer.waitElu,
        waitMs: x.producer.waitMs,
      };
      retry.push(row);
      console.log(
        `${mode.padEnd(10)} ${name.padEnd(28)} ${(row.recordsPerSec === null ? '-' : String(row.recordsPerSec)).padStart(10)} ${String(row.fullEvents).padStart(12)} ${String(row.spilledRecords).padStart(8)} ${String(row.flushAttempts).padStart(15)} ${(row.producerEluWhileWaiting * 100).toFixed(1).padStart(8)}% of ${row.waitMs.toFixed(0)} ms`,
      );
    }
  }
  result.spillRetry = retry;

  // Other work on the machine skews every figure: keep the load seen around the run with the results.
  env.loadAverage.end = os.loadavg()[0];
  console.log(`\nload average (1 min): ${env.loadAverage.start.toFixed(2)} at start, ${env.loadAverage.end.toFixed(2)} at end, on ${env.cores} cores`);
  const dir = path.join(repoRoot(), 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `ring-latency-${new Date().toISOString().slice(0, 10)}${quick ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  const d = workerData as ConsumerData | ProducerData;
  if (d.role === 'consumer') runConsumer(d);
  else
    runProducer(d).catch((err) => {
      throw err;
    });
}
