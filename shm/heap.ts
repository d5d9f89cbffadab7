// What V8 keeps after a burst, and how the server gives it back. Measured
// (bench run idle-memory, docs/PERFORMANCE.md, 2026-12-04): 30 s after
// 19,000 sessions connect, a workgroup's isolate had 56 MB of heap committed
// for 13 MB in use: its young generation had grown to V8's maximum (two
// 16 MB semi-spaces) during the burst and nothing shrinks it when the
// workgroup goes quiet; the main thread's young generation had grown as far
// while it loaded the server's modules. Two measures:
//
// - The young generation of a workgroup is capped (Worker resourceLimits
//   maxYoungGenerationSizeMb, --young-generation-mb), and the main thread's
//   stays at its initial 1 MB semi-space while the server starts
//   (--semi-space-growth-factor=1, set by bin/c10m.js before anything loads;
//   the flag is read whenever V8 would grow new space, and set back to V8's
//   default of 2 once the workgroups listen).
// - Old-space garbage (module loading, a burst's promoted handshake
//   objects) is collected once the isolate has gone quiet: gc() (V8's gc
//   extension, --expose-gc, also set by bin/c10m.js) once after start, and
//   in a workgroup again after at least IDLE_GC_SESSIONS new sessions
//   followed by IDLE_GC_QUIET_MS without one. One full GC of a heap of
//   10-20 MB: about 5-15 ms of the workgroup's loop, once per burst.
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

/** V8's --semi-space-growth-factor when not set. */
export const V8_SEMI_SPACE_GROWTH = 2;
/** A workgroup collects its garbage once this many sessions opened since the last time... */
export const IDLE_GC_SESSIONS = 1000;
/** ...and none for this long. */
export const IDLE_GC_QUIET_MS = 3000;

/** Lets new space grow again (the main thread's growth was held back while the server loaded). */
export function restoreYoungGrowth(): void {
  v8.setFlagsFromString(`--semi-space-growth-factor=${V8_SEMI_SPACE_GROWTH}`);
}

let gcFn: (() => void) | null | undefined;

/** A full GC of this isolate, if the process runs with --expose-gc (bin/c10m.js serve sets it); its ms, or null. */
export function collectGarbage(): number | null {
  if (gcFn === undefined) {
    // The gc extension is installed in contexts created after the flag: globalThis.gc in a workgroup, a new context's otherwise.
    const g = (globalThis as { gc?: () => void }).gc;
    try {
      gcFn = typeof g === 'function' ? g : (vm.runInNewContext('typeof gc === "function" ? gc : null') as (() => void) | null);
    } catch {
      gcFn = null;
    }
  }
  if (gcFn === null) return null;
  const t = performance.now();
  gcFn();
  return performance.now() - t;
}

/** When a workgroup collects: after a burst of sessions, once it has gone quiet. */
export class IdleGc {
  /** Negative: the first collection is due once the workgroup has been quiet since it started (its modules' garbage). */
  private openedAtLastGc: number;
  private lastOpened = 0;
  private lastOpenMs: number;

  constructor(
    nowMs: number,
    private readonly minSessions = IDLE_GC_SESSIONS,
    private readonly quietMs = IDLE_GC_QUIET_MS,
  ) {
    this.openedAtLastGc = -minSessions;
    this.lastOpenMs = nowMs;
  }

  /** Called every second with the sessions opened so far: true when it is time to collect (then counted as done). */
  due(opened: number, nowMs: number): boolean {
    if (opened !== this.lastOpened) {
      this.lastOpened = opened;
      this.lastOpenMs = nowMs;
      return false;
    }
    if (opened - this.openedAtLastGc < this.minSessions || nowMs - this.lastOpenMs < this.quietMs) return false;
    this.openedAtLastGc = opened;
    return true;
  }
}
