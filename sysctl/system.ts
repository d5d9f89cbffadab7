// Facts about the running system, read straight from /proc and /sys.
// The only file in sysctl/ that touches the machine: when native-io's
// limitsReport() lands, it can replace these readers behind the same shapes.
// Every reader returns null (or an empty list) for what it cannot see,
// never throws.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

/** Linux capability number of CAP_SYS_RESOURCE (raise hard rlimits, above nr_open too). */
export const CAP_SYS_RESOURCE = 24;

export interface DescriptorLimits {
  soft: number;
  hard: number;
}

export interface Capabilities {
  /** Effective set: what this process may do now. */
  effective: bigint;
  /** Bounding set: what this process or its children could ever gain. */
  bounding: bigint;
}

export interface Meminfo {
  totalBytes: number;
  availableBytes: number;
  hugePagesTotal: number;
  hugePagesFree: number;
  hugePageBytes: number;
}

export interface NetworkIrq {
  irq: number;
  name: string;
  /** CPUs the interrupt is delivered to (effective affinity, else where it has fired). */
  cpus: number[];
  count: number;
}

export interface NetworkInterfaceIrqs {
  iface: string;
  irqs: NetworkIrq[];
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Path of a sysctl key under /proc/sys ("net.ipv4.tcp_mem" -> /proc/sys/net/ipv4/tcp_mem). */
export function sysctlPath(key: string): string {
  return path.join('/proc/sys', ...key.split('.'));
}

/** A sysctl's value with whitespace runs collapsed to one space, or null when the key is not visible here. */
export function readSysctl(key: string): string | null {
  const text = readText(sysctlPath(key));
  return text === null ? null : text.trim().split(/\s+/).join(' ');
}

/** The numbers of a sysctl ("4096 131072 6291456" -> [4096, 131072, 6291456]), or null. */
export function readSysctlNumbers(key: string): number[] | null {
  const value = readSysctl(key);
  if (value === null) return null;
  const numbers = value.split(' ').map(Number);
  return numbers.every(Number.isFinite) ? numbers : null;
}

/** Whether this process could write the sysctl (false on a read-only /proc/sys, without privilege, or a key global to a child network namespace). */
export function sysctlWritable(key: string): boolean {
  try {
    fs.accessSync(sysctlPath(key), fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function parseLimit(word: string): number {
  return word === 'unlimited' ? Number.POSITIVE_INFINITY : Number(word);
}

/** RLIMIT_NOFILE of this process from /proc/self/limits. */
export function readDescriptorLimits(): DescriptorLimits | null {
  const text = readText('/proc/self/limits');
  if (text === null) return null;
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  if (!line) return null;
  const [soft, hard] = line.slice('Max open files'.length).trim().split(/\s+/);
  return { soft: parseLimit(soft), hard: parseLimit(hard) };
}

/** Effective and bounding capability sets from /proc/self/status. */
export function readCapabilities(): Capabilities | null {
  const text = readText('/proc/self/status');
  if (text === null) return null;
  const field = (name: string): bigint | null => {
    const m = new RegExp(`^${name}:\\s*([0-9a-fA-F]+)$`, 'm').exec(text);
    return m ? BigInt('0x' + m[1]) : null;
  };
  const effective = field('CapEff');
  const bounding = field('CapBnd');
  return effective === null || bounding === null ? null : { effective, bounding };
}

export function hasCapability(set: bigint, capability: number): boolean {
  return ((set >> BigInt(capability)) & 1n) === 1n;
}

/** Memory and huge pages from /proc/meminfo. */
export function readMeminfo(): Meminfo | null {
  const text = readText('/proc/meminfo');
  if (text === null) return null;
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(\s+kB)?/.exec(line);
    if (m) values.set(m[1], Number(m[2]) * (m[3] ? 1024 : 1));
  }
  const total = values.get('MemTotal');
  if (total === undefined) return null;
  return {
    totalBytes: total,
    availableBytes: values.get('MemAvailable') ?? values.get('MemFree') ?? 0,
    hugePagesTotal: values.get('HugePages_Total') ?? 0,
    hugePagesFree: values.get('HugePages_Free') ?? 0,
    hugePageBytes: values.get('Hugepagesize') ?? 2 * 1024 * 1024,
  };
}

/** Transparent huge pages mode ("always", "madvise" or "never"), or null when not visible. */
export function readTransparentHugePages(): string | null {
  const text = readText('/sys/kernel/mm/transparent_hugepage/enabled');
  const m = text === null ? null : /\[(\w+)\]/.exec(text);
  return m ? m[1] : null;
}

/** Cores this process may run on. */
export function readCores(): number {
  return os.availableParallelism();
}

/** Allocated file handles system-wide (first field of fs.file-nr), or null. */
export function readFilesInUse(): number | null {
  const numbers = readSysctlNumbers('fs.file-nr');
  return numbers ? numbers[0] : null;
}

export interface ConntrackState {
  max: number;
  count: number;
}

/** nf_conntrack's table size and use, or null when the module is not loaded (nothing is tracked). */
/** TCP sockets in use now (/proc/net/sockstat), or null. */
export function readTcpInUse(): number | null {
  try {
    const m = /^TCP: inuse (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export function readConntrack(): ConntrackState | null {
  const max = readSysctlNumbers('net.netfilter.nf_conntrack_max');
  if (!max) return null;
  const count = readSysctlNumbers('net.netfilter.nf_conntrack_count');
  return { max: max[0], count: count ? count[0] : 0 };
}

function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(',')) {
    if (part === '') continue;
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

/** IRQ numbers of a device: its own msi_irqs, or its parent's for a virtio device on PCI. */
function deviceIrqs(deviceDir: string): number[] {
  for (const dir of [deviceDir, path.dirname(deviceDir)]) {
    try {
      return fs.readdirSync(path.join(dir, 'msi_irqs')).map(Number).filter(Number.isInteger);
    } catch {
      // not this level
    }
  }
  return [];
}

/**
 * Interrupts of the physical network interfaces that are up, with the CPUs
 * each is delivered to. Only queue interrupts (names without "config") count.
 * Empty when /proc/interrupts or /sys/class/net are not visible.
 */
export function readNetworkIrqs(): NetworkInterfaceIrqs[] {
  const interrupts = readText('/proc/interrupts');
  let ifaces: string[];
  try {
    ifaces = fs.readdirSync('/sys/class/net');
  } catch {
    return [];
  }
  if (interrupts === null) return [];
  const lines = interrupts.split('\n');
  const cpuCount = lines[0].trim().split(/\s+/).length;
  const byIrq = new Map<number, { name: string; counts: number[] }>();
  for (const line of lines.slice(1)) {
    const m = /^\s*(\d+):\s+(.*)$/.exec(line);
    if (!m) continue;
    const fields = m[2].trim().split(/\s+/);
    const counts = fields.slice(0, cpuCount).map(Number);
    byIrq.set(Number(m[1]), { name: fields[fields.length - 1], counts });
  }
  const result: NetworkInterfaceIrqs[] = [];
  for (const iface of ifaces) {
    const link = path.join('/sys/class/net', iface, 'device');
    let deviceDir: string;
    try {
      deviceDir = fs.realpathSync(link);
    } catch {
      continue; // virtual interface (lo, veth, bridge, ifb)
    }
    if ((readText(path.join('/sys/class/net', iface, 'operstate')) ?? '').trim() !== 'up') continue;
    const irqs: NetworkIrq[] = [];
    for (const irq of deviceIrqs(deviceDir)) {
      const seen = byIrq.get(irq);
      if (!seen || /config/.test(seen.name)) continue;
      const effective = readText(`/proc/irq/${irq}/effective_affinity_list`);
      const fired = seen.counts.flatMap((c, cpu) => (c > 0 ? [cpu] : []));
      const cpus = effective !== null && effective.trim() !== '' ? parseCpuList(effective) : fired;
      irqs.push({ irq, name: seen.name, cpus, count: seen.counts.reduce((a, b) => a + b, 0) });
    }
    if (irqs.length > 0) result.push({ iface, irqs });
  }
  return result;
}

/**
 * Ports whose TCP traffic the raw table exempts from conntrack (NOTRACK /
 * notrack rules), as far as iptables-save or nft can show; null when neither
 * tool is installed or allowed to read the rules.
 */
export function readNotrackPorts(): number[] | null {
  const tools: Array<[string, string[]]> = [
    ['iptables-save', ['-t', 'raw']],
    ['nft', ['list', 'ruleset']],
  ];
  let seen = false;
  const ports = new Set<number>();
  for (const [cmd, args] of tools) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 2000 });
    if (r.error || r.status !== 0) continue;
    seen = true;
    for (const line of r.stdout.split('\n')) {
      if (!/NOTRACK|--notrack|\bnotrack\b/.test(line)) continue;
      const m = /(?:--dport|dport)\s+(\d+)/.exec(line);
      if (m) ports.add(Number(m[1]));
    }
  }
  return seen ? [...ports] : null;
}

/** The ephemeral port range and reserved ports (net.ipv4.ip_local_port_range / ip_local_reserved_ports). */
export function readLocalPorts(): { low: number; high: number; reserved: Array<[number, number]> } | null {
  const range = readSysctlNumbers('net.ipv4.ip_local_port_range');
  if (!range || range.length !== 2) return null;
  const reserved: Array<[number, number]> = [];
  for (const part of (readSysctl('net.ipv4.ip_local_reserved_ports') ?? '').split(',')) {
    if (part.trim() === '') continue;
    const [a, b] = part.split('-').map(Number);
    reserved.push([a, b ?? a]);
  }
  return { low: range[0], high: range[1], reserved };
}
