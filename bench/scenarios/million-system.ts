// The machine side of `bench run million` (bench/scenarios/million.ts): the
// kernel settings raised for the run only (and put back: at the end, on
// SIGINT/SIGTERM, on failure, at exit), the kernel's memory readings (slab,
// socket pages, conntrack), and the RSS of every node process of the server.
import * as fs from 'node:fs';
import { computeProfile, profileEntry } from '../../sysctl/profile';
import { SYSTEM_FILES_RESERVE } from '../../sysctl/costs';
import { readConntrack, readSysctl, sysctlPath, sysctlWritable } from '../../sysctl/system';
import { readRssBytes, type Target } from '../targets';

export interface SysctlChange {
  key: string;
  old: string;
  value: string;
  why: string;
}

export interface SysctlCheck {
  key: string;
  current: string | null;
  /** What the run sets it to, or null: kept (enough, or not present). */
  raisedTo: string | null;
  why: string;
}

/** One more than the ports a source address may need: a reconnect opens the new socket before the old port is free. */
const PORTS_HEADROOM = 1.5;
/** Conntrack entries: every session once, again during the storm (the old entries linger in their closing states). */
const CONNTRACK_PER_SESSION = 2.2;

function writeSysctl(key: string, value: string): void {
  fs.writeFileSync(sysctlPath(key), `${value}\n`);
}

const nums = (v: string) => v.split(' ').map(Number);
/** Every number of `have` at least the one of `want` at its place. */
const reaches = (have: string, want: string) => nums(want).every((w, i) => (nums(have)[i] ?? 0) >= w);

/**
 * What N sessions, both ends on this machine (2N sockets), need that the kernel may not have:
 * the values of the project's profile (sysctl/profile.ts) for 2N sockets, applied only where the
 * current value falls short of the need itself (so that a tiny run changes nothing).
 */
export function sysctlPlan(sessions: number, sourceAddresses: number): SysctlCheck[] {
  const sockets = 2 * sessions;
  const profile = computeProfile({ sessions: sockets, workgroups: 1 });
  const val = (key: string) => profileEntry(profile, key)?.value ?? '';
  const out: SysctlCheck[] = [];
  const check = (key: string, needed: boolean, value: string, why: string) => {
    const current = readSysctl(key);
    out.push({ key, current, raisedTo: current !== null && needed && !reaches(current, value) ? value : null, why });
  };
  const files = sockets + SYSTEM_FILES_RESERVE;
  const fileMax = readSysctl('fs.file-max');
  check('fs.file-max', fileMax !== null && Number(fileMax) < files, val('fs.file-max'), `${sockets} sockets (both ends here) + ${SYSTEM_FILES_RESERVE} for everything else = ${files} files`);
  // Socket memory in pages: below tcp_mem[1] TCP does not regulate; above it, every socket's buffers are cut to
  // their minimum. One page a socket under the pressure mark leaves a broadcast's queued frames untouched.
  const tcpMem = readSysctl('net.ipv4.tcp_mem');
  check(
    'net.ipv4.tcp_mem',
    tcpMem !== null && nums(tcpMem)[1] < sockets,
    val('net.ipv4.tcp_mem'),
    `pages: ${sockets} sockets x 1 page under the pressure mark (tcp_mem[1]); profile factors 1, 1.25, 1.5`,
  );
  const ct = readConntrack();
  if (ct !== null) {
    // Loaded but tracking nothing (no rule in this namespace needs it): no entries with TCP sockets open.
    const open = readKernel().tcpInUse;
    const tracking = ct.count > 0 || open === 0;
    const need = Math.ceil(sessions * CONNTRACK_PER_SESSION) + ct.count;
    check(
      'net.netfilter.nf_conntrack_max',
      tracking && ct.max < need,
      String(Math.max(need, Number(val('net.netfilter.nf_conntrack_max')))),
      tracking
        ? `loopback connections are tracked: ${CONNTRACK_PER_SESSION} x ${sessions} + ${ct.count} in use`
        : `the module is loaded but tracks nothing here (0 entries with ${open} TCP sockets open)`,
    );
  }
  const range = readSysctl('net.ipv4.ip_local_port_range');
  if (range !== null) {
    const [lo, hi] = nums(range);
    const perAddress = Math.ceil((sessions / Math.max(1, sourceAddresses)) * PORTS_HEADROOM);
    check('net.ipv4.ip_local_port_range', hi - lo + 1 < perAddress, val('net.ipv4.ip_local_port_range'), `${perAddress} ports per source address (${sourceAddresses} addresses, x${PORTS_HEADROOM})`);
  }
  return out;
}

/** The raised settings of this process, put back by restoreSysctls (once). */
const applied: SysctlChange[] = [];

/** Applies the plan's raises, recording the old values first; throws (after putting back what it changed) if a key cannot be written. */
export function raiseSysctls(plan: SysctlCheck[]): SysctlChange[] {
  const changes: SysctlChange[] = [];
  for (const c of plan) {
    if (c.raisedTo === null || c.current === null) continue;
    if (!sysctlWritable(c.key)) {
      restoreSysctls();
      throw new Error(`${c.key} must be raised from ${c.current} to ${c.raisedTo} (${c.why}), but it cannot be written here (run as root)`);
    }
    const change = { key: c.key, old: c.current, value: c.raisedTo, why: c.why };
    applied.push(change);
    try {
      writeSysctl(c.key, c.raisedTo);
    } catch (err) {
      restoreSysctls();
      throw new Error(`${c.key}: could not write ${c.raisedTo}: ${(err as Error).message}`);
    }
    changes.push(change);
  }
  return changes;
}

/** Puts back every value raiseSysctls changed (synchronous: also for signal and exit handlers); returns what it restored. */
export function restoreSysctls(): SysctlChange[] {
  const done: SysctlChange[] = [];
  while (applied.length > 0) {
    const c = applied.pop() as SysctlChange;
    try {
      writeSysctl(c.key, c.old);
      done.push(c);
    } catch (err) {
      process.stderr.write(`million: could not put ${c.key} back to ${c.old}: ${(err as Error).message}\n`);
    }
  }
  return done;
}

process.once('exit', () => void restoreSysctls());

// ---- Kernel memory ----

export interface KernelReading {
  slabBytes: number;
  sunreclaimBytes: number;
  /** /proc/net/sockstat TCP mem (pages of socket buffers), in bytes. */
  tcpMemBytes: number;
  tcpInUse: number;
  tcpTimeWait: number;
  tcpOrphans: number;
  conntrack: number | null;
  memAvailableBytes: number;
}

export function readKernel(): KernelReading {
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(meminfo)?.[1] ?? 0) * 1024;
  const sock = fs.readFileSync('/proc/net/sockstat', 'utf8');
  const tcp = (field: string) => Number(new RegExp(`^TCP:.*\\b${field} (\\d+)`, 'm').exec(sock)?.[1] ?? 0);
  return {
    slabBytes: kb('Slab'),
    sunreclaimBytes: kb('SUnreclaim'),
    tcpMemBytes: tcp('mem') * 4096,
    tcpInUse: tcp('inuse'),
    tcpTimeWait: tcp('tw'),
    tcpOrphans: tcp('orphan'),
    conntrack: readConntrack()?.count ?? null,
    memAvailableBytes: kb('MemAvailable'),
  };
}

// ---- The server's processes ----

export interface NodeProcesses {
  top: number;
  members: number[];
}

/** The top supervisor's pid and its node processes' (from the admin port's /jmx Processes). */
export async function nodeProcesses(target: Target): Promise<NodeProcesses> {
  const j = await target.jmx();
  const list = (j?.Processes ?? []) as { Pid?: number }[];
  return { top: target.pid, members: list.map((p) => p.Pid ?? 0).filter((p) => p > 0) };
}

/** RSS summed over the top and every node process (a process gone reads 0). */
export function rssSum(p: NodeProcesses): number {
  let sum = 0;
  for (const pid of [p.top, ...p.members]) {
    try {
      sum += readRssBytes(pid);
    } catch {
      // exited
    }
  }
  return sum;
}
