// Latency histograms of the benchmarks: hdr-histogram-js with the layout of
// the native client's buckets (3 significant digits, unit 1 µs), so that a
// bucket exported by bench/loadgen/index.ts lands in exactly one bucket here.
//
// Not the same thing as the fixed buckets of the server's stats block
// (protocol/stats.ts, bucketPercentile): those are 17 coarse buckets in shared
// memory, written by the server; these are fine-grained (0.1 %) histograms of
// what the clients measured. Past their top they follow the same rule: a
// value above HIGHEST_MICROS is recorded as HIGHEST_MICROS (hdr-histogram-js
// would throw), so a percentile past it reports the top, a floor, like
// bucketPercentile reports its last bound. Every value goes in through
// recordMicros or addPairs.
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;

/** Up to one hour in microseconds; larger values are clamped. */
export const HIGHEST_MICROS = 3_600_000_000;

export function newHistogram(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_MICROS, numberOfSignificantValueDigits: 3, autoResize: false, useWebAssembly: false, bitBucketSize: 'packed' });
}

/** Records one value in microseconds, clamped to 0..HIGHEST_MICROS. */
export function recordMicros(h: Histogram, micros: number, count = 1): void {
  h.recordValueWithCount(Math.max(0, Math.min(Math.round(micros), HIGHEST_MICROS)), count);
}

/** Adds [value, count, value, count, ...] pairs (loadgen's takeHistogram) to `h`. */
export function addPairs(h: Histogram, pairs: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    recordMicros(h, pairs[i], pairs[i + 1]);
    n += pairs[i + 1];
  }
  return n;
}

/** The reference benchmark's figures (mean, standard deviation, max, median, p95, p99) plus p99.9, in milliseconds. */
export interface LatencySummary {
  count: number;
  meanMs: number;
  stdDevMs: number;
  minMs: number;
  p50Ms: number;
  p90Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export const ms = (micros: number): number => Math.round(micros) / 1000;

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, meanMs: 0, stdDevMs: 0, minMs: 0, p50Ms: 0, p90Ms: 0, p95Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0 };
  return {
    count: h.totalCount,
    meanMs: ms(h.mean),
    stdDevMs: ms(h.stdDeviation),
    minMs: ms(h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.getValueAtPercentile(0)),
    p50Ms: ms(h.getValueAtPercentile(50)),
    p90Ms: ms(h.getValueAtPercentile(90)),
    p95Ms: ms(h.getValueAtPercentile(95)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    p999Ms: ms(h.getValueAtPercentile(99.9)),
    maxMs: ms(h.maxValue),
  };
}
