// Reads the kernel settings that bound how many sessions a node can hold.
// Plain file reads, so the native and fallback paths share them; only the
// process's own RLIMIT_NOFILE needs the addon (getrlimit), and without it
// /proc/self/limits tells the same figures.
import * as fs from 'node:fs';

export type ThpMode = 'always' | 'madvise' | 'never';

export interface LimitsReport {
  /** RLIMIT_NOFILE of this process; Infinity when unlimited. */
  nofileSoft: number;
  nofileHard: number;
  /** Where the two figures above were read. */
  nofileSource: 'getrlimit' | '/proc/self/limits';
  fsNrOpen: number | null;
  fsFileMax: number | null;
  somaxconn: number | null;
  /** net.ipv4.ip_local_port_range: [first, last]. */
  ipLocalPortRange: [number, number] | null;
  /** net.ipv4.tcp_rmem and tcp_wmem: [min, default, max] in bytes per socket. */
  tcpRmemBytes: [number, number, number] | null;
  tcpWmemBytes: [number, number, number] | null;
  /** net.ipv4.tcp_mem: [low, pressure, high] in pages for all TCP sockets. */
  tcpMemPages: [number, number, number] | null;
  /** null when conntrack is not loaded (then it limits nothing). */
  nfConntrackMax: number | null;
  nrHugepages: number | null;
  hugepagesFree: number | null;
  hugepageSizeBytes: number | null;
  /** Transparent huge pages: the selected mode, null when the kernel has none. */
  thpMode: ThpMode | null;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function readNumbers(file: string): number[] | null {
  const text = readText(file);
  if (text === null) return null;
  const values = text.split(/\s+/).map(Number);
  return values.every(Number.isFinite) ? values : null;
}

function readNumber(file: string): number | null {
  const v = readNumbers(file);
  return v && v.length === 1 ? v[0] : null;
}

function tuple<N extends 2 | 3>(file: string, n: N): (N extends 2 ? [number, number] : [number, number, number]) | null {
  const v = readNumbers(file);
  return v && v.length === n ? (v as never) : null;
}

/** A /proc/meminfo field, in bytes when its unit is kB. */
export function meminfo(key: string): number | null {
  const text = readText('/proc/meminfo');
  const m = text && new RegExp(`^${key}:\\s+(\\d+)( kB)?$`, 'm').exec(text);
  if (!m) return null;
  return Number(m[1]) * (m[2] ? 1024 : 1);
}

export function thpMode(): ThpMode | null {
  const m = /\[(always|madvise|never)\]/.exec(readText('/sys/kernel/mm/transparent_hugepage/enabled') ?? '');
  return m ? (m[1] as ThpMode) : null;
}

/** RLIMIT_NOFILE as /proc/self/limits shows it ("unlimited" is Infinity). */
export function noFileLimitFromProc(): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readText('/proc/self/limits') ?? '');
  if (!m) throw new Error('native-io: could not read "Max open files" from /proc/self/limits');
  const value = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: value(m[1]), hard: value(m[2]) };
}

export function limitsReport(nofile: { soft: number; hard: number }, nofileSource: LimitsReport['nofileSource']): LimitsReport {
  return {
    nofileSoft: nofile.soft,
    nofileHard: nofile.hard,
    nofileSource,
    fsNrOpen: readNumber('/proc/sys/fs/nr_open'),
    fsFileMax: readNumber('/proc/sys/fs/file-max'),
    somaxconn: readNumber('/proc/sys/net/core/somaxconn'),
    ipLocalPortRange: tuple('/proc/sys/net/ipv4/ip_local_port_range', 2),
    tcpRmemBytes: tuple('/proc/sys/net/ipv4/tcp_rmem', 3),
    tcpWmemBytes: tuple('/proc/sys/net/ipv4/tcp_wmem', 3),
    tcpMemPages: tuple('/proc/sys/net/ipv4/tcp_mem', 3),
    nfConntrackMax: readNumber('/proc/sys/net/netfilter/nf_conntrack_max'),
    nrHugepages: readNumber('/proc/sys/vm/nr_hugepages'),
    hugepagesFree: meminfo('HugePages_Free'),
    hugepageSizeBytes: meminfo('Hugepagesize'),
    thpMode: thpMode(),
  };
}
