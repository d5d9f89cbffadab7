// native-io: the one module the rest of c10m imports for native services.
// Each function runs in the c10m_native addon when it is loaded, else in its
// JS fallback (native-io/fallback.ts); nativeStatus() says which. Set
// C10M_NATIVE_DISABLED=1 to force the fallbacks (read once, at load).
import { loadNative } from './binding';
import * as fallback from './fallback';
import { limitsReport as readLimits, noFileLimitFromProc, type LimitsReport } from './procfs';

export type { LimitsReport, ThpMode } from './procfs';
export { ipHashIndex } from './iphash';

const native = loadNative();

export interface NativeStatus {
  loaded: boolean;
  /** Why the addon is not in use, or null when it is. */
  error: string | null;
  disabledByEnv: boolean;
  addonPath: string | null;
}

export function nativeStatus(): NativeStatus {
  return { loaded: native.binding !== null, error: native.error, disabledByEnv: native.disabledByEnv, addonPath: native.addonPath };
}

// ---- Arenas ----

/** Where an arena's memory came from, best first; 'js' is the fallback's plain SharedArrayBuffer. */
export type ArenaPath = 'hugetlb' | 'thp' | 'normal' | 'js';

export interface SharedArena {
  /** byteLength is exactly the bytes asked for. */
  buffer: SharedArrayBuffer;
  path: ArenaPath;
  /** Bytes of memory behind it: rounded up to the page size (the huge page size for 'hugetlb'). */
  bytes: number;
}

export interface AllocSharedOptions {
  /** false: ordinary pages only, e.g. for a small block not worth a 2 MiB huge page. Default true. */
  hugePages?: boolean;
}

/**
 * A zeroed SharedArrayBuffer for rings, slabs and caches, usable with Atomics
 * from every worker thread it is posted to. Its memory comes from MAP_HUGETLB
 * when vm.nr_hugepages has room (the size rounded up to whole huge pages),
 * else transparent huge pages (only for at least one 2 MiB huge page, THP
 * mode always or madvise), else ordinary pages. Freed when the last thread
 * lets go of it.
 */
export function allocShared(bytes: number, options: AllocSharedOptions = {}): SharedArena {
  const hugePages = hugePagesOption(options);
  if (native.binding) return native.binding.allocShared(bytes, hugePages);
  return fallback.allocShared(bytes);
}

/**
 * allocShared off this thread: the addon maps the memory and faults every
 * page of it in (MADV_POPULATE_WRITE) on a libuv pool thread, and the
 * promise gives the SharedArrayBuffer once that is done. For memory needed
 * soon but not now: a loop that writes into it later takes no page fault
 * and no huge-page zeroing (the cache's next segment: workgroups/cache.ts).
 * Bad arguments throw at once, like allocShared; a failed mapping rejects.
 * The fallback allocates on this thread and resolves.
 */
export function allocSharedAsync(bytes: number, options: AllocSharedOptions = {}): Promise<SharedArena> {
  const hugePages = hugePagesOption(options);
  if (native.binding?.allocSharedAsync) return native.binding.allocSharedAsync(bytes, hugePages);
  if (native.binding) return Promise.resolve(native.binding.allocShared(bytes, hugePages));
  return Promise.resolve(fallback.allocShared(bytes));
}

function hugePagesOption(options: AllocSharedOptions): boolean {
  if (typeof options !== 'object' || options === null) {
    const err = new TypeError('The "options" argument must be of type object.');
    (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
    throw err;
  }
  const hugePages = options.hugePages ?? true;
  if (typeof hugePages !== 'boolean') {
    const err = new TypeError('The "hugePages" argument must be of type boolean.');
    (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
    throw err;
  }
  return hugePages;
}

export interface ArenaStats {
  /** Bytes of live arenas per path: process-wide for the native paths, this thread's for 'js'. */
  hugetlbBytes: number;
  thpBytes: number;
  normalBytes: number;
  jsBytes: number;
}

export function arenaStats(): ArenaStats {
  const s = native.binding ? native.binding.arenaStats() : { hugetlbBytes: 0, thpBytes: 0, normalBytes: 0, jsBytes: 0 };
  return { ...s, jsBytes: fallback.arenaJsBytes() };
}

// ---- IP-hashed SO_REUSEPORT ----

export type IpHashResult =
  /** fd: the socket the program went on; sockets: this process's listening sockets on the port; fds: one per reuseport group. */
  { attached: true; fd: number; sockets: number; fds: number[] } | { attached: false; reason: string };

/**
 * Steers every connection from one client address (IPv4, or an IPv6 /64) to
 * the same socket of the SO_REUSEPORT group on `port`: index
 * ipHashIndex(address, groups) in the order the sockets joined the group.
 * Call it after every workgroup listens, and again after a workgroup
 * restarts (see README.md: a restart changes the order). Throws on bad
 * arguments, when no socket of this process listens on the port, when one
 * lacks SO_REUSEPORT, or when groups exceeds the listening sockets; returns
 * { attached: false, reason } on the fallback path, where the kernel's
 * 4-tuple hash stays in force. acrossProcesses: the group also holds other
 * processes' sockets (the kernel's group spans every process of the user
 * bound to the port), so groups may exceed this process's own sockets.
 */
export function attachIpHash(port: number, groups: number, acrossProcesses = false): IpHashResult {
  if (native.binding) return native.binding.attachIpHash(port, groups, acrossProcesses);
  return fallback.attachIpHash(port, groups, native.error ?? 'unknown reason');
}

// ---- Descriptor limits ----

export interface NoFileLimit {
  soft: number;
  hard: number;
  previousSoft: number;
  /** null when the addon raised (or found) the soft limit at the hard one; else why not. The fallback always says it could not call setrlimit. */
  reason: string | null;
}

/**
 * Raises this process's open-file soft limit (RLIMIT_NOFILE) to its hard
 * limit; throws if the kernel refuses. The fallback cannot call setrlimit: it
 * reports the limits from /proc/self/limits and says so in `reason`.
 */
export function raiseNoFileLimit(): NoFileLimit {
  if (!native.binding) return fallback.raiseNoFileLimit(native.error ?? 'unknown reason');
  const r = native.binding.raiseNoFileLimit();
  return { ...r, reason: r.soft === r.hard ? null : `the hard limit is unlimited, so the soft limit stops at fs.nr_open (${r.soft})` };
}

/** The descriptor limits and the kernel settings sysctl/ tunes, as one object. */
export function limitsReport(): LimitsReport {
  if (native.binding) return readLimits(native.binding.noFileLimit(), 'getrlimit');
  return readLimits(noFileLimitFromProc(), '/proc/self/limits');
}
