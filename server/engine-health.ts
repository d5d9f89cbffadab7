// What the workgroups' stats blocks say of the engine (Stat.ENGINE_STATE,
// one gauge per workgroup, written by workgroups/redis-store.ts): which
// engine runs and which workgroups cannot reach Redis now. /readyz,
// /metrics, /jmx and the dashboard all read it from here.
//
// The engine is derived from the blocks, not from the configuration: a
// workgroup on the Redis engine writes a non-zero state from its start
// (UNREACHABLE until its first connection is up), the memory engine never
// does. Before any workgroup ran, a node on the Redis engine therefore
// shows "memory"; /readyz is 503 then anyway (nothing listens yet).
// TODO(lead): once Config.engine is merged (server/config.ts), pass it to
// engineHealth() so that the views name the engine before the first workgroup starts.
import { Stat } from '../protocol/stats';
import type { EngineKind } from '../shm/workgroup-init';

/** Values of Stat.ENGINE_STATE (protocol/stats.ts). */
export const EngineState = {
  /** The memory engine: nothing outside the node to reach. */
  MEMORY: 0,
  /** Redis engine, its command connection up. */
  REDIS_UP: 1,
  /** Redis engine, Redis unreachable: publishes are refused with UNAVAILABLE. */
  REDIS_UNREACHABLE: 2,
} as const;

export interface EngineHealth {
  kind: EngineKind;
  /** Workgroups that cannot reach Redis now (their publishes get UNAVAILABLE), in id order. */
  unreachable: number[];
}

/** Reads ENGINE_STATE of every block (copies or live views; a few loads, no allocation but the answer). */
export function engineHealth(blocks: readonly Float64Array[], configured?: EngineKind): EngineHealth {
  let redis = configured === 'redis';
  const unreachable: number[] = [];
  for (let id = 0; id < blocks.length; id++) {
    const state = blocks[id][Stat.ENGINE_STATE];
    if (state !== EngineState.MEMORY) redis = true;
    if (state === EngineState.REDIS_UNREACHABLE) unreachable.push(id);
  }
  return { kind: redis ? 'redis' : 'memory', unreachable };
}

/** 1 while the workgroup's engine can sequence publishes (the memory engine always can), 0 while Redis is unreachable. */
export function engineUp(block: Float64Array): 0 | 1 {
  return block[Stat.ENGINE_STATE] === EngineState.REDIS_UNREACHABLE ? 0 : 1;
}
