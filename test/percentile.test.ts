// The one percentile of the fixed latency buckets (protocol/stats.ts), as the
// stats block, /jmx's window and the benchmarks' HDR histograms use it: the
// same answer inside the buckets, and the same rule past the last one (the
// top bound, a floor; never Infinity, never a throw).
import { addPairs, HIGHEST_MICROS, newHistogram, recordMicros, summarize } from '../bench/histogram';
import { bucketPercentile, LATENCY_BASE, LATENCY_BOUNDS_MICROS, LATENCY_BUCKETS, latencyPercentile, recordLatency, STATS_SLOTS } from '../protocol/stats';
import { windowLatency } from '../server/jmx';

const LAST = LATENCY_BOUNDS_MICROS[LATENCY_BOUNDS_MICROS.length - 1];

function block(samples: number[]): Float64Array {
  const stats = new Float64Array(STATS_SLOTS);
  for (const s of samples) recordLatency(stats, s);
  return stats;
}

test('no sample: null everywhere', () => {
  const empty = block([]);
  expect(bucketPercentile(new Float64Array(LATENCY_BUCKETS), 0.5)).toBeNull();
  expect(latencyPercentile(empty, 0.99)).toBeNull();
  expect(windowLatency(empty, empty).LatencyP99Micros).toBeNull();
});

test('inside the buckets: the upper bound of the bucket the rank falls in', () => {
  const stats = block([5, 5, 5, 5, 5, 5, 5, 5, 5, 300]); // 9 below 10 µs, 1 below 500 µs
  expect(latencyPercentile(stats, 0.5)).toBe(10);
  expect(latencyPercentile(stats, 0.9)).toBe(10);
  expect(latencyPercentile(stats, 0.99)).toBe(500);
  expect(latencyPercentile(stats, 0)).toBe(10); // the first non-empty bucket, not an empty one below it
  const w = windowLatency(stats, block([]));
  expect([w.LatencyP50Micros, w.LatencyP90Micros, w.LatencyP99Micros]).toEqual([10, 10, 500]);
});

test('past the last bound: the stats block, the /jmx window and an HDR histogram all report their top', () => {
  const over = 5 * LAST;
  const stats = block([100, over, over, over]);
  expect(stats[LATENCY_BASE + LATENCY_BUCKETS - 1]).toBe(3);
  expect(latencyPercentile(stats, 0.99)).toBe(LAST);
  expect(windowLatency(stats, block([100])).LatencyP99Micros).toBe(LAST);
  expect(windowLatency(stats, block([])).LatencyP50Micros).toBe(LAST);

  const h = newHistogram();
  recordMicros(h, 100);
  recordMicros(h, 10 * HIGHEST_MICROS); // would throw unclamped
  addPairs(h, [10 * HIGHEST_MICROS, 2]);
  expect(h.totalCount).toBe(4);
  const s = summarize(h);
  // HDR keeps 3 significant digits: the top bucket's value is within 0.1 % of HIGHEST_MICROS.
  expect(s.p99Ms * 1000).toBeGreaterThanOrEqual(HIGHEST_MICROS * 0.999);
  expect(s.p99Ms * 1000).toBeLessThanOrEqual(HIGHEST_MICROS * 1.001);
  expect(Number.isFinite(s.maxMs)).toBe(true);
});
