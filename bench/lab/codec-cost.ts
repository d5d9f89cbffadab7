// CPU per msgpack publish command on the server's command path, before the
// message is sequenced: the general path (msgpackr decodes the whole
// command, data included, and the data is encoded again for the cache and
// the frames) against the fast path (protocol/msgpack-pub.ts: the envelope
// read in place, the data kept as the publisher's bytes).
//
//   npm run lab:build && node dist-lab/bench/lab/codec-cost.js [--size 512] [--iterations 1000000] [--rounds 5]
//
// Single-threaded, in this process; the figure is the median of the rounds.
// Writes bench/results/codec-cost-<date>.json with the environment header.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataToMsgpack, packr, parseMsgpackCommand, unpackr, validateCommand, type PubCommand } from '../../protocol/codec';
import { envHeader } from '../env';
import { ROOT } from '../paths';
import { arg } from './args';

const size = Number(arg('size', '512'));
const iterations = Number(arg('iterations', '1000000'));
const rounds = Number(arg('rounds', '5'));
if (!(size >= 0 && iterations > 0 && rounds > 0)) {
  process.stderr.write('codec-cost: --size, --iterations and --rounds must be positive numbers\n');
  process.exit(2);
}

const env = envHeader(ROOT);
// The frame benchpub sends: bin data, a topic, the creation time in micros.
const frame = packr.pack({ id: 12, op: 'pub', topic: '/bench/t/123', data: Buffer.alloc(size, 7), ack: false, ts: Date.now() * 1000 });

function general(b: Uint8Array): number {
  const c = validateCommand(unpackr.unpack(b)) as PubCommand;
  return dataToMsgpack(c.data).length;
}
function fast(b: Uint8Array): number {
  const c = parseMsgpackCommand(b) as PubCommand;
  if (c.raw === null) throw new Error('the fast path did not take the benchmark frame');
  return c.raw.length;
}

function nsPerCommand(f: (b: Uint8Array) => number): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += f(frame);
  const ns = Number(process.hrtime.bigint() - t0) / iterations;
  if (sink === 0) throw new Error('nothing measured');
  return ns;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const g: number[] = [];
const f: number[] = [];
for (let r = 0; r < rounds; r++) {
  g.push(nsPerCommand(general));
  f.push(nsPerCommand(fast));
}
env.loadAverage.end = Number(os.loadavg()[0].toFixed(2));
const result = {
  benchmark: 'codec-cost',
  env,
  params: { size, iterations, rounds, frameBytes: frame.length },
  nsPerCommand: { general: { median: median(g), rounds: g }, fast: { median: median(f), rounds: f } },
  ratio: median(g) / median(f),
};
const line = `codec-cost: msgpack pub of ${size} B data (${frame.length} B frame): general ${median(g).toFixed(0)} ns, fast ${median(f).toFixed(0)} ns per command (${result.ratio.toFixed(2)}x), medians of ${rounds} rounds of ${iterations}`;
process.stdout.write(line + '\n');
const dir = path.join(ROOT, 'bench', 'results');
fs.mkdirSync(dir, { recursive: true });
const file = path.join(dir, `codec-cost-${new Date().toISOString().replace(/:/g, '-').replace(/\..*/, 'Z')}.json`);
fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(JSON.stringify({ msg: 'codec-cost done', file }) + '\n');
