// How stats blocks combine: a process's workgroups into the process, every
// workgroup (of every process) into the node. Counters and most gauges add
// up (sessions, bytes, cache sizes; a 0/1 "workgroup is ..." gauge sums to
// the number of workgroups that are). Not these:
//
// - HEARTBEAT_MS, a wall-clock time: the oldest (a stuck loop shows);
// - LOOP_UTILIZATION (0..1) and LOOP_DELAY_MAX_MS: the maximum, the busiest
//   loop, since one saturated loop delays every message it holds whatever
//   the others do (the mean is in the per-unit series: avg() in PromQL);
// - RING_SPILL_PEAK_BYTES, "the most one queue held": the maximum;
// - ENGINE_STATE (0 memory, 1 Redis up, 2 Redis unreachable): the maximum,
//   the worst.
//
// Summed, two workgroups with a 30 ms loop delay read 60 ms, and two
// workgroups up on Redis (1 + 1) read as unreachable (2).
import { STATS_SLOTS, Stat } from '../protocol/stats';

/** Slots whose combination is the maximum. */
export const MAX_SLOTS: readonly Stat[] = [Stat.LOOP_UTILIZATION, Stat.LOOP_DELAY_MAX_MS, Stat.RING_SPILL_PEAK_BYTES, Stat.ENGINE_STATE];

const IS_MAX = new Uint8Array(STATS_SLOTS);
for (const s of MAX_SLOTS) IS_MAX[s] = 1;

/** Adds `b` into `into` (both stats blocks), slot by slot as above. `into` starts as a fresh block (zeros). */
export function combineInto(into: Float64Array, b: Float64Array): void {
  for (let k = 0; k < STATS_SLOTS; k++) {
    if (IS_MAX[k] === 1) {
      if (b[k] > into[k]) into[k] = b[k];
    } else if (k === Stat.HEARTBEAT_MS) {
      const beat = b[k];
      if (beat > 0 && (into[k] === 0 || beat < into[k])) into[k] = beat;
    } else {
      into[k] += b[k];
    }
  }
}

/** The blocks combined into a new one. */
export function combineBlocks(blocks: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(STATS_SLOTS);
  for (const b of blocks) combineInto(out, b);
  return out;
}
