// The kernel and limits profile for a target number of sessions: a pure
// function of its input (no reads of the running system), so the same N
// always gives the same files. Every value is >= its floor in costs.ts and
// never decreases as N grows.

import {
  ARENA_BYTES_PER_WORKGROUP,
  AUTO_PROCESS_HEADROOM,
  CONNTRACK_BYTES_PER_ENTRY,
  DEFAULT_ADMIN_PORT,
  DEFAULT_MEMORY_PER_SESSION_BYTES,
  DEFAULT_PUBLIC_PORT,
  DESCRIPTOR_HEADROOM,
  DESCRIPTOR_RESERVE_BASE,
  DESCRIPTOR_RESERVE_PER_WORKGROUP,
  FLOORS,
  HUGE_PAGE_BYTES,
  MAX_PROCESSES,
  MEASURED,
  PAGE_BYTES,
  PROCESS_BASE_BYTES,
  SOCKET_BUFFER_MAX_BYTES,
  SYSTEM_FILES_RESERVE,
  TCP_BUFFER_BYTES_PER_SOCKET,
  TCP_BUFFER_SIZES,
  TCP_RMEM_SIZES,
  TCP_MEM_FACTORS,
  USOCKETS_LISTEN_BACKLOG,
  WORKGROUP_BASE_BYTES,
} from './costs';

/** Largest session count a profile is computed for: keeps nofile (N x 1.2) under the kernel's nr_open ceiling (2^31 - 64). */
export const MAX_PROFILE_SESSIONS = 1_000_000_000;
/** Default workgroups of a profile when none is given (the reference machine's 12 cores); the CLI defaults to this machine's cores instead. */
export const DEFAULT_PROFILE_WORKGROUPS = 12;

export interface ProfileInput {
  /** Target concurrent sessions on this host. */
  sessions: number;
  /** Workgroups (one per core by default in `c10m serve`); with processes, of each process. */
  workgroups?: number;
  /** Node processes the sessions are spread over (`c10m serve --processes N`; default 1). */
  processes?: number;
  /** Arena (session slab) bytes per session, for vm.nr_hugepages and the memory plan. */
  memoryPerSessionBytes?: number;
  publicPort?: number;
  adminPort?: number;
}

/**
 * `atLeast`: the value is a minimum; a system that already has more keeps it
 * (apply.sh skips such a line). `set`: the value itself is the point (small
 * buffers, a port range).
 */
export type EntryMode = 'atLeast' | 'set';

export interface SysctlEntry {
  key: string;
  /** As written in sysctl.d: numbers separated by single spaces. */
  value: string;
  /** One line: why this value for this N. */
  why: string;
  mode: EntryMode;
  /** Written with a leading '-' so that a missing key (module not loaded) is not an error. */
  optional: boolean;
}

export interface LimitsEntry {
  domain: string;
  type: 'soft' | 'hard';
  item: 'nofile';
  value: number;
  why: string;
}

/** What N sessions strictly need (no headroom, no floors): what `c10m doctor` checks. */
export interface ProfileNeeds {
  /** Open descriptors of one server process: its share of the sessions plus its own. */
  descriptorsPerProcess: number;
  /** Node processes, and the sessions each holds (ceil(sessions / processes)). */
  processes: number;
  sessionsPerProcess: number;
  /** Pages of socket buffer memory TCP must be allowed (tcp_mem's hard cap must reach it). */
  tcpMemPages: number;
  /** Per-socket default buffers (rmem + wmem) times N must fit under tcp_mem's cap. */
  sessions: number;
  /** The kernel caps uSockets' listen backlog at somaxconn. */
  listenBacklog: number;
  /** Huge pages that would back all the arenas. */
  hugePages: number;
  /** Memory of N idle sessions: arenas, kernel sockets, process and workgroup baselines (conntrack excluded). */
  memoryBytes: number;
  /** Extra kernel memory if the public port is tracked by conntrack. */
  conntrackBytes: number;
  workgroups: number;
  ports: { public: number; admin: number };
}

export interface Profile {
  input: Required<ProfileInput>;
  sysctl: SysctlEntry[];
  limits: LimitsEntry[];
  /** Things a sysctl line cannot do (conntrack bypass, IRQ affinity), as comment lines. */
  notes: string[];
  needs: ProfileNeeds;
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

function nextPowerOfTwo(value: number): number {
  let p = 1;
  while (p < value) p *= 2;
  return p;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  }
}

/** Fills defaults and validates; throws RangeError with a sentence for a bad value. */
export function normalizeInput(input: ProfileInput): Required<ProfileInput> {
  const full: Required<ProfileInput> = {
    sessions: input.sessions,
    workgroups: input.workgroups ?? DEFAULT_PROFILE_WORKGROUPS,
    processes: input.processes ?? 1,
    memoryPerSessionBytes: input.memoryPerSessionBytes ?? DEFAULT_MEMORY_PER_SESSION_BYTES,
    publicPort: input.publicPort ?? DEFAULT_PUBLIC_PORT,
    adminPort: input.adminPort ?? DEFAULT_ADMIN_PORT,
  };
  checkInteger('sessions', full.sessions, 1, MAX_PROFILE_SESSIONS);
  checkInteger('workgroups', full.workgroups, 1, 1024);
  checkInteger('processes', full.processes, 1, MAX_PROCESSES);
  checkInteger('memory per session (bytes)', full.memoryPerSessionBytes, 1, 1 << 20);
  checkInteger('public port', full.publicPort, 1, 65535);
  checkInteger('admin port', full.adminPort, 1, 65535);
  return full;
}

/** Descriptors one process needs for N sessions in W workgroups, without headroom. */
export function descriptorsNeeded(sessions: number, workgroups: number): number {
  return sessions + DESCRIPTOR_RESERVE_BASE + DESCRIPTOR_RESERVE_PER_WORKGROUP * workgroups;
}

/**
 * `--processes auto` (server/processes.ts) and `c10m doctor --processes auto`:
 * the sessions one node process is sized for under the descriptor limit it
 * can get (one workgroup's reserve: with auto, processes are many and
 * workgroups few; less AUTO_PROCESS_HEADROOM), and the processes maxSessions
 * then needs.
 */
export function autoProcesses(maxSessions: number, descriptorLimit: number): { sessionsPerProcess: number; processes: number } {
  const usable = Math.max(0, descriptorLimit - DESCRIPTOR_RESERVE_BASE - DESCRIPTOR_RESERVE_PER_WORKGROUP);
  const sessionsPerProcess = Math.floor(usable * (1 - AUTO_PROCESS_HEADROOM));
  return { sessionsPerProcess, processes: sessionsPerProcess < 1 ? Infinity : Math.ceil(maxSessions / sessionsPerProcess) };
}

/** The most sessions one process can hold under a descriptor limit (the inverse of descriptorsNeeded). */
export function sessionsForDescriptors(descriptorLimit: number, workgroups: number): number {
  return Math.max(0, descriptorLimit - DESCRIPTOR_RESERVE_BASE - DESCRIPTOR_RESERVE_PER_WORKGROUP * workgroups);
}

/** Bytes of the arenas the server allocates for N sessions in W workgroups. */
export function arenaBytes(sessions: number, workgroups: number, memoryPerSessionBytes: number): number {
  return sessions * memoryPerSessionBytes + workgroups * ARENA_BYTES_PER_WORKGROUP;
}

/**
 * Memory of N idle sessions on one host: arenas, kernel sockets, process and
 * workgroup baselines; with P node processes of W workgroups each, P x W
 * workgroups and P + 1 process baselines (the top supervisor).
 */
export function memoryNeeded(sessions: number, workgroups: number, memoryPerSessionBytes: number, processes = 1): number {
  const processBases = processes === 1 ? 1 : processes + 1;
  return (
    arenaBytes(sessions, workgroups * processes, memoryPerSessionBytes) + sessions * MEASURED.kernelBytesPerSocket + processBases * PROCESS_BASE_BYTES + processes * workgroups * WORKGROUP_BASE_BYTES
  );
}

/** OS and page cache left alone when sizing a node (the inverse of memoryNeeded subtracts it first). */
export const OS_RESERVE_BYTES = 2 * 1024 * 1024 * 1024;

/**
 * The most idle sessions that fit in memoryBytes of RAM (the inverse of
 * memoryNeeded), after OS_RESERVE_BYTES; extraPerSessionBytes adds load,
 * e.g. one queued page of socket buffer per session.
 */
export function sessionsForMemory(memoryBytes: number, workgroups: number, memoryPerSessionBytes: number, extraPerSessionBytes = 0): number {
  const fixed = OS_RESERVE_BYTES + memoryNeeded(0, workgroups, memoryPerSessionBytes);
  const perSession = memoryPerSessionBytes + MEASURED.kernelBytesPerSocket + extraPerSessionBytes;
  return Math.max(0, Math.floor((memoryBytes - fixed) / perSession));
}

/** File-name label for a session count: 10000000 -> "10m", 500000 -> "500k", 1234 -> "1234". */
export function sessionsLabel(sessions: number): string {
  if (sessions >= 1_000_000 && sessions % 1_000_000 === 0) return `${sessions / 1_000_000}m`;
  if (sessions >= 1_000 && sessions % 1_000 === 0) return `${sessions / 1_000}k`;
  return String(sessions);
}

export function computeProfile(input: ProfileInput): Profile {
  const inp = normalizeInput(input);
  const n = inp.sessions;
  const w = inp.workgroups;
  // With P node processes, descriptor limits are per process and the system-wide counts are P times them.
  const p = inp.processes;
  const perProcess = Math.ceil(n / p);

  const descriptors = descriptorsNeeded(perProcess, w);
  const nofile = Math.max(FLOORS.nofile, roundUp(descriptors * (1 + DESCRIPTOR_HEADROOM), 1024));
  const nrOpen = Math.max(FLOORS.nrOpen, nofile);
  const fileMax = Math.max(FLOORS.fileMax, p * nofile + SYSTEM_FILES_RESERVE);

  const tcpBudgetPages = Math.ceil((n * TCP_BUFFER_BYTES_PER_SOCKET) / PAGE_BYTES);
  const tcpMem = TCP_MEM_FACTORS.map((f, i) => Math.max(FLOORS.tcpMemPages[i], Math.ceil(tcpBudgetPages * f)));

  const somaxconn = clamp(nextPowerOfTwo(Math.ceil(n / 256)), FLOORS.somaxconn, 65535);
  const synBacklog = clamp(nextPowerOfTwo(Math.ceil(n / 100)), FLOORS.synBacklog, 262144);
  const conntrackMax = Math.max(FLOORS.conntrackMax, p * nofile);

  const arenas = arenaBytes(n, p * w, inp.memoryPerSessionBytes);
  const hugePages = Math.ceil(arenas / HUGE_PAGE_BYTES);
  const mib = (bytes: number) => `${Math.round(bytes / (1024 * 1024))} MiB`;
  const buffers = TCP_BUFFER_SIZES.join(' ');

  const sysctl: SysctlEntry[] = [
    {
      key: 'fs.nr_open',
      value: String(nrOpen),
      why: `per-process descriptor ceiling; RLIMIT_NOFILE (${nofile}) cannot be set above it`,
      mode: 'atLeast',
      optional: false,
    },
    {
      key: 'fs.file-max',
      value: String(fileMax),
      why:
        p === 1
          ? `system-wide open files: the server's ${nofile} plus ${SYSTEM_FILES_RESERVE} for everything else`
          : `system-wide open files: ${p} node processes x ${nofile} plus ${SYSTEM_FILES_RESERVE} for everything else`,
      mode: 'atLeast',
      optional: false,
    },
    {
      key: 'net.ipv4.tcp_mem',
      value: tcpMem.join(' '),
      why: `socket buffer pages: ${n} sessions x ${TCP_BUFFER_BYTES_PER_SOCKET} B = ${tcpBudgetPages} pages unregulated, pressure from x${TCP_MEM_FACTORS[1]}, hard cap x${TCP_MEM_FACTORS[2]}`,
      mode: 'atLeast',
      optional: false,
    },
    {
      key: 'net.ipv4.tcp_rmem',
      value: TCP_RMEM_SIZES.join(' '),
      why: 'small receive buffers (min default max): clients send little (commands), so no socket holds more than 16 KiB; the minimum is one page, the least Linux 6.18 accepts',
      mode: 'set',
      optional: false,
    },
    {
      key: 'net.ipv4.tcp_wmem',
      value: buffers,
      why: 'small send buffers, as the reference server: frames are small, and past 16 KiB uWS holds its own bounded backpressure',
      mode: 'set',
      optional: false,
    },
    {
      key: 'net.core.rmem_max',
      value: String(SOCKET_BUFFER_MAX_BYTES),
      why: 'caps SO_RCVBUF an application may ask for, matching the tcp_rmem maximum',
      mode: 'set',
      optional: false,
    },
    {
      key: 'net.core.wmem_max',
      value: String(SOCKET_BUFFER_MAX_BYTES),
      why: 'caps SO_SNDBUF an application may ask for, matching the tcp_wmem maximum',
      mode: 'set',
      optional: false,
    },
    {
      key: 'net.core.somaxconn',
      value: String(somaxconn),
      why: `caps every listen backlog; uSockets asks for ${USOCKETS_LISTEN_BACKLOG}, the rest is room for a larger backlog in a reconnect storm of ${n} sessions`,
      mode: 'atLeast',
      optional: false,
    },
    {
      key: 'net.ipv4.tcp_max_syn_backlog',
      value: String(synBacklog),
      why: `half-open connections held while ${n} sessions reconnect at once (about 1 in 100 in flight); syncookies beyond`,
      mode: 'atLeast',
      optional: false,
    },
    {
      key: 'net.ipv4.ip_local_port_range',
      value: '10240 65535',
      why: 'wide ephemeral range for outbound sockets (Redis, load generators and proxies on this host)',
      mode: 'set',
      optional: false,
    },
    {
      key: 'net.ipv4.ip_local_reserved_ports',
      value: `${inp.publicPort},${inp.adminPort}`,
      why: 'keeps the public and admin ports out of the ephemeral range so a restart can always bind them',
      mode: 'set',
      optional: false,
    },
    {
      key: 'net.netfilter.nf_conntrack_max',
      value: String(conntrackMax),
      why: `one conntrack entry per tracked session (${CONNTRACK_BYTES_PER_ENTRY} B each); not needed with the NOTRACK rule below; '-': ignored when nf_conntrack is not loaded`,
      mode: 'atLeast',
      optional: true,
    },
    {
      key: 'vm.nr_hugepages',
      value: String(hugePages),
      why: `2 MiB pages for the arenas: ${n} x ${inp.memoryPerSessionBytes} B + ${p * w} workgroups x ${mib(ARENA_BYTES_PER_WORKGROUP)} = ${mib(arenas)}`,
      mode: 'atLeast',
      optional: false,
    },
  ];

  const limitsWhy =
    p === 1
      ? `${n} sessions + ${descriptors - n} descriptors of the server itself, +${Math.round(DESCRIPTOR_HEADROOM * 100)}% for reconnect storms`
      : `per node process: ${perProcess} sessions (${n} over ${p} processes) + ${descriptors - perProcess} descriptors of its own, +${Math.round(DESCRIPTOR_HEADROOM * 100)}% for reconnect storms`;
  const limits: LimitsEntry[] = [];
  // pam_limits' '*' does not apply to root, so root gets its own lines.
  for (const domain of ['*', 'root']) {
    for (const type of ['soft', 'hard'] as const) {
      limits.push({ domain, type, item: 'nofile', value: nofile, why: limitsWhy });
    }
  }

  const port = inp.publicPort;
  const notes = [
    `Conntrack: rather than tracking ${n} sessions, bypass conntrack for the public port in the raw table:`,
    `  iptables -t raw -I PREROUTING -p tcp --dport ${port} -j NOTRACK; iptables -t raw -I OUTPUT -p tcp --sport ${port} -j NOTRACK (and the same with ip6tables)`,
    `  or nft: table inet c10m { chain pre { type filter hook prerouting priority raw; tcp dport ${port} notrack; } chain out { type filter hook output priority raw; tcp sport ${port} notrack; } }`,
    `  then accept the port statelessly in the filter table (untracked packets never match ESTABLISHED).`,
    "IRQ affinity: spread the network card's queue interrupts over the cores (irqbalance, or echo a CPU mask to /proc/irq/N/smp_affinity per queue) and enable RPS for single-queue cards.",
    'Descriptor limits are set where the server starts: systemd LimitNOFILE= (deploy/systemd/c10m.service), docker --ulimit nofile=, or the limits file for login sessions.',
  ];

  return {
    input: inp,
    sysctl,
    limits,
    notes,
    needs: {
      descriptorsPerProcess: descriptors,
      processes: p,
      sessionsPerProcess: perProcess,
      tcpMemPages: tcpBudgetPages,
      sessions: n,
      listenBacklog: USOCKETS_LISTEN_BACKLOG,
      hugePages,
      memoryBytes: memoryNeeded(n, w, inp.memoryPerSessionBytes, p),
      conntrackBytes: n * CONNTRACK_BYTES_PER_ENTRY,
      workgroups: w,
      ports: { public: inp.publicPort, admin: inp.adminPort },
    },
  };
}

/** The entry for a key, or undefined. */
export function profileEntry(profile: Profile, key: string): SysctlEntry | undefined {
  return profile.sysctl.find((e) => e.key === key);
}

/** The nofile value of the limits file (soft = hard). */
export function profileNofile(profile: Profile): number {
  return profile.limits[0].value;
}

function commandLine(inp: Required<ProfileInput>): string {
  const processes = inp.processes > 1 ? ` --processes ${inp.processes}` : '';
  return `c10m sysctl --sessions ${inp.sessions}${processes} --workgroups ${inp.workgroups} --memory-per-session ${inp.memoryPerSessionBytes}`;
}

/** Marker at the start of the comment of an `atLeast` entry; apply.sh reads it. */
export const AT_LEAST_MARKER = '[at least]';

/** A sysctl.d file: a comment line per entry saying why, then `key = value`. */
export function renderSysctl(profile: Profile): string {
  const inp = profile.input;
  const lines = [
    `# c10m kernel profile for ${inp.sessions} sessions, ${inp.processes > 1 ? `${inp.processes} node processes x ` : ''}${inp.workgroups} workgroups, ${inp.memoryPerSessionBytes} arena bytes per session.`,
    `# Generated by: ${commandLine(inp)} --format sysctl`,
    '# Install as /etc/sysctl.d/60-c10m.conf (sysctl --system), or apply now and keep the old values: sysctl/apply.sh FILE',
    `# ${AT_LEAST_MARKER}: a minimum; keep a higher value the system already has (apply.sh does).`,
    '',
  ];
  for (const e of profile.sysctl) {
    lines.push(`# ${e.mode === 'atLeast' ? AT_LEAST_MARKER + ' ' : ''}${e.why}`);
    lines.push(`${e.optional ? '-' : ''}${e.key} = ${e.value}`);
  }
  lines.push('');
  for (const note of profile.notes) lines.push(`# ${note}`);
  return lines.join('\n') + '\n';
}

/** A limits.conf file (for /etc/security/limits.d/): a comment line per entry, then `domain type item value`. */
export function renderLimits(profile: Profile): string {
  const inp = profile.input;
  const lines = [
    `# c10m descriptor limits for ${inp.sessions} sessions, ${inp.processes > 1 ? `${inp.processes} node processes x ` : ''}${inp.workgroups} workgroups.`,
    `# Generated by: ${commandLine(inp)} --format limits`,
    '# Install as /etc/security/limits.d/60-c10m.conf; applies to login sessions (pam_limits).',
    '# systemd services ignore it: use LimitNOFILE= in the unit (deploy/systemd/c10m.service).',
    `# fs.nr_open must be at least this value first (the sysctl profile sets it).`,
    '',
  ];
  for (const e of profile.limits) {
    lines.push(`# ${e.why}`);
    lines.push(`${e.domain.padEnd(8)}${e.type.padEnd(8)}${e.item.padEnd(8)}${e.value}`);
  }
  return lines.join('\n') + '\n';
}
