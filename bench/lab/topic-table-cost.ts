// Memory and CPU of the owner's topic table (workgroups/topics.ts) against
// the Map it replaced (name -> id in a Map, rows doubling), in one run:
// bytes per topic beyond its name, and ns per find of a name the table
// holds, given as a fresh string (as a topic decoded from a frame is: no
// hash cached yet) and as the same string again (hash cached by V8).
//
//   npm run lab:build && node dist-lab/bench/lab/topic-table-cost.js [--topics 1000,19000,1000000] [--rounds 5]
//
// Single-threaded, in this process (re-run with --expose-gc for the memory
// figures). Writes bench/results/topic-table-cost-<date>.json with the
// environment header.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopicTable } from '../../workgroups/topics';
import { envHeader } from '../env';
import { ROOT } from '../paths';
import { arg } from './args';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const sizes = arg('topics', '1000,19000,1000000').split(',').map(Number);
const rounds = Number(arg('rounds', '5'));
if (sizes.some((n) => !(n > 0)) || !(rounds > 0)) {
  process.stderr.write('topic-table-cost: --topics takes positive counts, --rounds a positive number\n');
  process.exit(2);
}

/** The table as it was before (commit 2b5b8d8): a Map from name to id, rows doubling. */
class MapTopicTable {
  private readonly ids = new Map<string, number>();
  private names: (string | undefined)[] = [];
  epoch = new Uint32Array(1024);
  seq = new Float64Array(1024);
  interest = new Uint32Array(1024);
  touchedSec = new Uint32Array(1024);
  private nextId = 0;
  find(topic: string): number {
    const id = this.ids.get(topic);
    return id === undefined ? -1 : id;
  }
  intern(topic: string): number {
    const existing = this.ids.get(topic);
    if (existing !== undefined) return existing;
    const id = this.nextId++;
    if (id >= this.epoch.length) {
      const n = this.epoch.length * 2;
      const g = (a: Uint32Array) => {
        const b = new Uint32Array(n);
        b.set(a);
        return b;
      };
      this.epoch = g(this.epoch);
      this.interest = g(this.interest);
      this.touchedSec = g(this.touchedSec);
      const s = new Float64Array(n);
      s.set(this.seq);
      this.seq = s;
    }
    this.ids.set(topic, id);
    this.names[id] = topic;
    this.epoch[id] = 1;
    return id;
  }
}

interface Table {
  find(topic: string): number;
  intern(topic: string): number;
}

/** A name as a frame decoder makes it: a new flat string, its hash not computed yet. */
const fresh = (s: string): string => Buffer.from(s, 'latin1').toString('latin1');

function used(): number {
  (gc as () => void)();
  (gc as () => void)();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function bytesPerTopic(make: () => Table, names: string[]): number {
  const before = used();
  const t = make();
  for (const n of names) t.intern(n);
  const after = used();
  if (t.find(names[names.length - 1]) < 0) throw new Error('lost a topic');
  return (after - before) / names.length;
}

function nsPerFind(t: Table, lookups: string[]): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < lookups.length; i++) sink += t.find(lookups[i]);
  const ns = Number(process.hrtime.bigint() - t0) / lookups.length;
  if (sink < 0) throw new Error('a lookup missed');
  return ns;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const env = envHeader(ROOT);
const results: Record<string, unknown>[] = [];
const lines: string[] = [];
for (const n of sizes) {
  // Names like the benchmarks' per-session topics, made once and shared by both tables.
  const names = Array.from({ length: n }, (_, i) => `/bench/t/${i}`);
  // 1,000,000 lookups whatever the size, in a scattered order.
  const order = Array.from({ length: 1_000_000 }, (_, i) => names[(i * 7919) % n]);
  const figures: Record<string, { bytes: number[]; freshNs: number[]; cachedNs: number[] }> = { map: { bytes: [], freshNs: [], cachedNs: [] }, table: { bytes: [], freshNs: [], cachedNs: [] } };
  for (let r = 0; r < rounds; r++) {
    for (const [kind, make] of [
      ['map', () => new MapTopicTable()],
      ['table', () => new TopicTable()],
    ] as const) {
      const f = figures[kind];
      f.bytes.push(bytesPerTopic(make, names));
      const t: Table = make();
      for (const name of names) t.intern(name);
      f.freshNs.push(nsPerFind(t, order.map(fresh)));
      f.cachedNs.push(nsPerFind(t, order));
    }
  }
  const row = {
    topics: n,
    map: { bytesPerTopic: median(figures.map.bytes), nsPerFindFresh: median(figures.map.freshNs), nsPerFindCached: median(figures.map.cachedNs) },
    table: { bytesPerTopic: median(figures.table.bytes), nsPerFindFresh: median(figures.table.freshNs), nsPerFindCached: median(figures.table.cachedNs) },
    rounds: figures,
  };
  results.push(row);
  lines.push(
    `topic-table-cost: ${n} topics: bytes per topic beyond its name ${row.map.bytesPerTopic.toFixed(1)} (Map) -> ${row.table.bytesPerTopic.toFixed(1)} (open addressing); ` +
      `ns per find, fresh string ${row.map.nsPerFindFresh.toFixed(0)} -> ${row.table.nsPerFindFresh.toFixed(0)}, same string ${row.map.nsPerFindCached.toFixed(0)} -> ${row.table.nsPerFindCached.toFixed(0)}`,
  );
  process.stdout.write(lines[lines.length - 1] + '\n');
}
env.loadAverage.end = Number(os.loadavg()[0].toFixed(2));
const dir = path.join(ROOT, 'bench', 'results');
fs.mkdirSync(dir, { recursive: true });
const file = path.join(dir, `topic-table-cost-${new Date().toISOString().replace(/:/g, '-').replace(/\..*/, 'Z')}.json`);
fs.writeFileSync(file, JSON.stringify({ benchmark: 'topic-table-cost', env, params: { sizes, rounds }, results }, null, 2) + '\n');
process.stdout.write(JSON.stringify({ msg: 'topic-table-cost done', file }) + '\n');
