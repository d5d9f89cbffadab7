// `c10m doctor`: what N sessions need (the profile's strict needs, no
// headroom) against what the running system has, one row per check, with
// the command that fixes a failure and a plain note when this process
// cannot apply that fix itself.

import { AUTO_PROCESS_HEADROOM, DESCRIPTOR_RESERVE_BASE, DESCRIPTOR_RESERVE_PER_WORKGROUP, MAX_PROCESSES, MEASURED, PAGE_BYTES } from './costs';
import { autoProcesses, computeProfile, Profile, ProfileInput, profileEntry, profileNofile, sessionsForDescriptors } from './profile';
import * as system from './system';

export interface DoctorRow {
  check: string;
  /** What N sessions need, e.g. ">= 10000160". */
  needed: string;
  /** What this system has, or "not visible". */
  actual: string;
  ok: boolean;
  /** A command (or setting) that fixes a failure; empty when ok. */
  fix: string;
  /** Why it matters, why it cannot be fixed from here, or what was assumed; may be empty. */
  note: string;
}

/** What doctor checks: a profile's input, with --processes N or auto (as `c10m serve`), and load generators on this host. */
export interface DoctorInput extends Omit<ProfileInput, 'processes'> {
  processes?: number | 'auto';
  /** A benchmark's clients run on this host over loopback: their sockets, ports and processes are checked too. */
  loopbackClients?: boolean;
}

export interface DoctorReport {
  sessions: number;
  /** Node processes (--processes, auto resolved as serve would); workgroups are per process. */
  processes: number;
  workgroups: number;
  ok: boolean;
  rows: DoctorRow[];
}

const GIB = 1024 * 1024 * 1024;

function gib(bytes: number): string {
  return bytes >= GIB ? `${(bytes / GIB).toFixed(1)} GiB` : `${Math.ceil(bytes / (1024 * 1024))} MiB`;
}

function limitText(value: number): string {
  return Number.isFinite(value) ? String(value) : 'unlimited';
}

const NOT_VISIBLE = 'not visible';

/** "sysctl -w key=value" with the profile's value (quoted when it has spaces). */
function sysctlFix(profile: Profile, ...keys: string[]): string {
  const parts = keys.map((key) => {
    const value = profileEntry(profile, key)?.value ?? '';
    return value.includes(' ') ? `${key}="${value}"` : `${key}=${value}`;
  });
  return `sysctl -w ${parts.join(' ')}`;
}

/** A note when the fix cannot be applied by this process. */
function writableNote(...keys: string[]): string {
  const blocked = keys.filter((k) => !system.sysctlWritable(k));
  if (blocked.length === 0) return '';
  return `cannot be set from this process: ${blocked.map(system.sysctlPath).join(', ')} is not writable here (read-only /proc/sys, no privilege, or a host-wide key seen from a container); set it on the host`;
}

/** An unverifiable check passes with a note rather than failing a system doctor cannot see. */
function unseen(check: string, needed: string, why: string): DoctorRow {
  return { check, needed, actual: NOT_VISIBLE, ok: true, fix: '', note: `unverified: ${why}` };
}

function descriptorRows(profile: Profile): DoctorRow[] {
  const need = profile.needs.descriptorsPerProcess;
  const nofile = profileNofile(profile);
  const w = profile.needs.workgroups;
  const limits = system.readDescriptorLimits();
  if (!limits) {
    return [unseen('descriptors (RLIMIT_NOFILE)', `>= ${need}`, '/proc/self/limits is not readable')];
  }
  const caps = system.readCapabilities();
  const canRaiseHard = caps ? system.hasCapability(caps.effective, system.CAP_SYS_RESOURCE) : false;
  const childCouldGain = caps ? system.hasCapability(caps.bounding, system.CAP_SYS_RESOURCE) : false;
  const nrOpen = system.readSysctlNumbers('fs.nr_open')?.[0] ?? null;

  const softOk = limits.soft >= need;
  const soft: DoctorRow = {
    check: 'descriptors, soft limit',
    needed: `>= ${need}`,
    actual: limitText(limits.soft),
    ok: softOk,
    fix: softOk ? '' : limits.hard >= need ? `ulimit -Sn ${Math.min(nofile, limits.hard)}` : 'raise the hard limit (next row)',
    note: softOk
      ? ''
      : limits.hard >= need
        ? 'this process may raise its soft limit up to the hard limit itself (Node does at start)'
        : `the soft limit cannot go above the hard limit (${limitText(limits.hard)})`,
  };

  const hardOk = limits.hard >= need;
  let hardFix = '';
  let hardNote = '';
  if (!hardOk) {
    const most = sessionsForDescriptors(limits.hard, w);
    hardFix = `LimitNOFILE=${nofile} in the systemd unit, or docker run --ulimit nofile=${nofile}:${nofile}`;
    if (!canRaiseHard) {
      hardNote =
        `cannot be raised by this process: the hard limit is ${limitText(limits.hard)} and CAP_SYS_RESOURCE ` +
        `(bit ${system.CAP_SYS_RESOURCE} of CapEff in /proc/self/status) is not in its effective set` +
        (childCouldGain ? '' : ', nor in its bounding set, so no process started from here can gain it') +
        `; one process here holds at most ${most} sessions. Raise the limit where the server is started, ` +
        `or spread the sessions over more processes (c10m serve --processes auto --max-sessions ${profile.needs.sessions}: ${autoProcesses(profile.needs.sessions, limits.hard).processes} here).`;
    } else if (nrOpen !== null && nrOpen < need) {
      hardNote = `this process may raise it (it has CAP_SYS_RESOURCE), but not above fs.nr_open (${nrOpen}): raise fs.nr_open first`;
      hardFix = `${sysctlFix(profile, 'fs.nr_open')}; then prlimit --pid <server pid> --nofile=${nofile}:${nofile}`;
    } else {
      hardNote = 'this process has CAP_SYS_RESOURCE and may raise it';
      hardFix = `prlimit --pid <server pid> --nofile=${nofile}:${nofile}, or ${hardFix}`;
    }
  }
  const hard: DoctorRow = {
    check: 'descriptors, hard limit',
    needed: `>= ${need}`,
    actual: limitText(limits.hard),
    ok: hardOk,
    fix: hardFix,
    note: hardNote,
  };
  return [soft, hard];
}

/** A ">= value" check of one number of a sysctl (index: which of its numbers). */
function atLeastRow(profile: Profile, check: string, key: string, need: number, index: number, why: string): DoctorRow {
  const numbers = system.readSysctlNumbers(key);
  if (!numbers) return unseen(check, `>= ${need}`, `${system.sysctlPath(key)} is not visible here (check on the host)`);
  const actual = numbers[index];
  const ok = actual >= need;
  return {
    check,
    needed: `>= ${need}`,
    actual: numbers.length > 1 ? numbers.join(' ') : String(actual),
    ok,
    fix: ok ? '' : sysctlFix(profile, key),
    note: ok ? '' : [why, writableNote(key)].filter(Boolean).join('; '),
  };
}

function fileMaxRow(profile: Profile, loopbackClients: boolean): DoctorRow {
  const inUse = system.readFilesInUse() ?? 0;
  const p = profile.needs.processes;
  const server = p * profile.needs.descriptorsPerProcess;
  const clients = loopbackClients ? profile.needs.sessions : 0;
  const what = p === 1 ? "the server's descriptors" : `${p} node processes x ${profile.needs.descriptorsPerProcess} descriptors`;
  return atLeastRow(
    profile,
    'fs.file-max',
    'fs.file-max',
    server + clients + inUse,
    0,
    `${what}${clients > 0 ? `, the ${clients} client sockets on this host` : ''} plus the ${inUse} open elsewhere now`,
  );
}

/** The descriptor limit a node process gets (as `c10m serve`: the hard limit, else fs.nr_open), or null when not visible. */
function processDescriptorLimit(): number | null {
  const limits = system.readDescriptorLimits();
  if (!limits) return null;
  return Number.isFinite(limits.hard) ? limits.hard : (system.readSysctlNumbers('fs.nr_open')?.[0] ?? 1_048_576);
}

/** With --processes: how many, how many sessions each, and the arithmetic auto does (server/processes.ts). */
function processesRow(input: DoctorInput, profile: Profile, limit: number | null): DoctorRow {
  const { processes: p, sessionsPerProcess: per, sessions: n, workgroups: w } = profile.needs;
  const auto = input.processes === 'auto';
  const check = auto ? 'processes (--processes auto)' : 'processes';
  const actual = `descriptor limit ${limit === null ? NOT_VISIBLE : limit} per process, ${system.readCores()} cores`;
  if (auto && limit === null) return unseen(check, `ceil(${n} / sessions per process)`, 'the descriptor limit is not readable: counted as 1 process');
  const fits = auto ? autoProcesses(n, limit as number) : null;
  const ok = p <= MAX_PROCESSES && (fits === null || fits.sessionsPerProcess >= 1);
  const serve = `c10m serve --processes ${auto ? 'auto' : p} --max-sessions ${n}${p > 1 ? ' --engine redis' : ''}`;
  const arithmetic =
    fits !== null
      ? `${fits.sessionsPerProcess} sessions per process = (descriptor limit ${limit} - ${DESCRIPTOR_RESERVE_BASE} reserved - ${DESCRIPTOR_RESERVE_PER_WORKGROUP} per workgroup) less ${AUTO_PROCESS_HEADROOM * 100}% headroom; `
      : '';
  return {
    check,
    needed: `${p} x ${per} sessions${auto ? ` = ceil(${n} / ${fits?.sessionsPerProcess})` : ''}, at most ${MAX_PROCESSES}`,
    actual,
    ok,
    fix: ok ? '' : 'raise the descriptor limit (RLIMIT_NOFILE) where the server starts',
    note:
      `${arithmetic}${serve} starts ${p} node process${p === 1 ? '' : 'es'} of ${w} workgroup${w === 1 ? '' : 's'}${p > 1 ? ' and a top supervisor' : ''}` +
      (p > 1 ? '; topics meet across processes through Redis (--engine redis)' : ''),
  };
}

/** A benchmark's clients on this host (--loopback-clients): source addresses (each reaches one server port from every ephemeral port once), client processes, and ports. */
function loopbackRow(profile: Profile, limit: number | null): DoctorRow {
  const n = profile.needs.sessions;
  const check = 'loopback clients';
  const ports = system.readLocalPorts();
  if (!ports) return unseen(check, `${n} client sockets`, 'net.ipv4.ip_local_port_range is not visible');
  const reserved = ports.reserved.reduce((k, [a, b]) => k + Math.max(0, Math.min(b, ports.high) - Math.max(a, ports.low) + 1), 0);
  const perAddress = Math.max(1, ports.high - ports.low + 1 - reserved);
  const addresses = Math.ceil(n / perAddress);
  const perClientProcess = limit === null ? null : sessionsForDescriptors(limit, 1);
  const clientProcesses = perClientProcess === null || perClientProcess < 1 ? null : Math.ceil(n / perClientProcess);
  const ok = addresses <= 16_777_214;
  return {
    check,
    needed: `${addresses} source address${addresses === 1 ? '' : 'es'} of 127.0.0.0/8` + (clientProcesses === null ? '' : `, ${clientProcesses} client process${clientProcesses === 1 ? '' : 'es'}`),
    actual: `ephemeral ports ${ports.low}-${ports.high} (${perAddress} per source address)`,
    ok,
    fix: '',
    note:
      `a client address reaches the server's one address and port once per ephemeral port; ` +
      (perClientProcess === null ? '' : `a client process holds at most ${perClientProcess} sockets at this descriptor limit; `) +
      `both ends are on this host: ${2 * n} sockets in tcp_mem and fs.file-max, and conntrack (when loaded) tracks loopback too`,
  };
}

function sendBufferRow(profile: Profile, sockets: number): DoctorRow {
  // A fan-out burst fills send buffers; receive buffers stay near empty because the server reads at once.
  const check = 'net.ipv4.tcp_wmem (default)';
  const n = sockets;
  const wmem = system.readSysctlNumbers('net.ipv4.tcp_wmem');
  const tcpMem = system.readSysctlNumbers('net.ipv4.tcp_mem');
  const needed = `${n} x default <= tcp_mem cap`;
  if (!wmem || !tcpMem) return unseen(check, needed, 'tcp_wmem or tcp_mem is not visible here');
  const total = n * wmem[1];
  const cap = tcpMem[2] * PAGE_BYTES;
  const ok = total <= cap;
  return {
    check,
    needed,
    actual: `${n} x ${wmem[1]} B = ${gib(total)}, cap ${gib(cap)}`,
    ok,
    fix: ok ? '' : sysctlFix(profile, 'net.ipv4.tcp_wmem', 'net.ipv4.tcp_rmem'),
    note: ok
      ? ''
      : [
          "a fan-out burst that fills every session's default send buffer would pass the kernel's TCP memory cap, and TCP then drops; small buffers (or a larger tcp_mem) keep it under",
          writableNote('net.ipv4.tcp_wmem', 'net.ipv4.tcp_rmem'),
        ]
          .filter(Boolean)
          .join('; '),
  };
}

function portRangeRow(profile: Profile): DoctorRow {
  const { public: pub, admin } = profile.needs.ports;
  const check = 'ephemeral ports vs server ports';
  const needed = `${pub}, ${admin} outside or reserved`;
  const ports = system.readLocalPorts();
  if (!ports) return unseen(check, needed, 'net.ipv4.ip_local_port_range is not visible');
  const clash = [pub, admin].filter((p) => p >= ports.low && p <= ports.high && !ports.reserved.some(([a, b]) => p >= a && p <= b));
  const ok = clash.length === 0;
  return {
    check,
    needed,
    actual: `${ports.low}-${ports.high}` + (ports.reserved.length ? `, reserved ${ports.reserved.map(([a, b]) => (a === b ? a : `${a}-${b}`)).join(',')}` : ''),
    ok,
    fix: ok ? '' : sysctlFix(profile, 'net.ipv4.ip_local_reserved_ports'),
    note: ok ? '' : `port ${clash.join(', ')} may be taken by an outbound socket, and a restart then fails to bind it`,
  };
}

function conntrackRow(profile: Profile): DoctorRow {
  const n = profile.needs.sessions;
  const port = profile.needs.ports.public;
  const check = 'conntrack';
  const conntrack = system.readConntrack();
  if (!conntrack) {
    return { check, needed: `>= ${n} entries, or untracked`, actual: 'nf_conntrack not loaded', ok: true, fix: '', note: 'nothing is tracked' };
  }
  const notrack = system.readNotrackPorts();
  if (notrack && notrack.includes(port)) {
    return { check, needed: `>= ${n} entries, or untracked`, actual: `port ${port} untracked (NOTRACK)`, ok: true, fix: '', note: '' };
  }
  const need = n + conntrack.count;
  // Loaded but hooked by no rule (the kernel registers its hooks on demand): nothing is tracked, however many sockets are open.
  const tcp = system.readTcpInUse();
  if (conntrack.count === 0 && tcp !== null && tcp >= IDLE_CONNTRACK_SOCKETS) {
    return {
      check,
      needed: `>= ${need} entries, or untracked`,
      actual: `max ${conntrack.max}, 0 in use with ${tcp} TCP sockets open`,
      ok: true,
      fix: '',
      note: `nf_conntrack is loaded but tracks nothing now (no netfilter rule uses it); a rule that does (-m conntrack, NAT, a container runtime's) would need ${sysctlFix(profile, 'net.netfilter.nf_conntrack_max')} or the NOTRACK rules`,
    };
  }
  const ok = conntrack.max >= need;
  return {
    check,
    needed: `>= ${need} entries, or untracked`,
    actual: `max ${conntrack.max}, ${conntrack.count} in use`,
    ok,
    fix: ok
      ? ''
      : `iptables -t raw -I PREROUTING -p tcp --dport ${port} -j NOTRACK; iptables -t raw -I OUTPUT -p tcp --sport ${port} -j NOTRACK (or ${sysctlFix(profile, 'net.netfilter.nf_conntrack_max')})`,
    note: ok
      ? notrack === null
        ? 'raw-table rules not readable here (no iptables-save or nft); counted as tracked'
        : ''
      : 'a full conntrack table drops new connections ("nf_conntrack: table full")' + (writableNote('net.netfilter.nf_conntrack_max') ? '; ' + writableNote('net.netfilter.nf_conntrack_max') : ''),
  };
}

/** With this many TCP sockets open and no conntrack entry, conntrack is not hooked. */
const IDLE_CONNTRACK_SOCKETS = 100;

function hugePagesRow(profile: Profile): DoctorRow {
  const need = profile.needs.hugePages;
  const check = 'huge pages';
  const mem = system.readMeminfo();
  if (!mem) return unseen(check, `>= ${need} free`, '/proc/meminfo is not readable');
  const thp = system.readTransparentHugePages();
  const reserved = mem.hugePagesFree >= need;
  const thpUsable = thp === 'always' || thp === 'madvise';
  const ok = reserved || thpUsable;
  return {
    check,
    needed: `>= ${need} free (${gib(need * mem.hugePageBytes)})`,
    actual: `${mem.hugePagesFree} free of ${mem.hugePagesTotal}, THP ${thp ?? NOT_VISIBLE}`,
    ok,
    fix: ok ? '' : sysctlFix(profile, 'vm.nr_hugepages'),
    note: reserved
      ? ''
      : thpUsable
        ? `not reserved: the arenas fall back to transparent huge pages (madvise), which may not be had under fragmentation; reserve them for a deterministic start: ${sysctlFix(profile, 'vm.nr_hugepages')}`
        : 'no reserved and no transparent huge pages: the arenas use 4 KiB pages (more TLB misses)' + (writableNote('vm.nr_hugepages') ? '; ' + writableNote('vm.nr_hugepages') : ''),
  };
}

function memoryRow(profile: Profile): DoctorRow {
  const need = profile.needs.memoryBytes;
  const check = 'memory';
  const mem = system.readMeminfo();
  if (!mem) return unseen(check, `>= ${gib(need)}`, '/proc/meminfo is not readable');
  // Reserved huge pages are not in MemAvailable but are there for the arenas.
  const available = mem.availableBytes + mem.hugePagesFree * mem.hugePageBytes;
  const ok = available >= need;
  const perSession = profile.input.memoryPerSessionBytes + MEASURED.kernelBytesPerSocket;
  return {
    check,
    needed: `>= ${gib(need)}`,
    actual: `${gib(available)} available of ${gib(mem.totalBytes)}`,
    ok,
    fix: ok ? '' : `fewer sessions per node: about ${Math.max(0, Math.floor((available - (need - profile.needs.sessions * perSession)) / perSession))} fit here`,
    note: ok ? '' : `idle sessions at about ${perSession} B each (arena + kernel socket), plus the process baseline; conntrack would add ${gib(profile.needs.conntrackBytes)} if the port is tracked`,
  };
}

function coresRow(profile: Profile): DoctorRow {
  const cores = system.readCores();
  const w = profile.needs.workgroups;
  const ok = cores >= w;
  return {
    check: 'cores',
    needed: `>= ${w} (one per workgroup)`,
    actual: String(cores),
    ok,
    fix: ok ? '' : `c10m serve --workgroups ${cores}`,
    note: ok ? '' : 'more workgroups than cores: workgroups share cores and latency suffers',
  };
}

function irqRow(): DoctorRow {
  const check = 'network IRQ spread';
  const cores = system.readCores();
  const ifaces = system.readNetworkIrqs();
  if (ifaces.length === 0) return unseen(check, 'queues over several cores', 'no network interface interrupts visible (container, or no physical interface up)');
  const failing: string[] = [];
  const actual: string[] = [];
  for (const { iface, irqs } of ifaces) {
    const cpus = new Set(irqs.flatMap((i) => i.cpus));
    actual.push(`${iface}: ${irqs.length} IRQs on CPU ${[...cpus].sort((a, b) => a - b).join(',')}`);
    if (cores > 1 && irqs.length > 1 && cpus.size < 2) failing.push(iface);
  }
  const ok = failing.length === 0;
  const single = ifaces.filter((i) => i.irqs.length === 1).map((i) => i.iface);
  return {
    check,
    needed: cores > 1 ? 'queues over >= 2 cores' : 'any (1 core)',
    actual: actual.join('; '),
    ok,
    fix: ok ? '' : 'irqbalance, or echo <cpu mask> > /proc/irq/<N>/smp_affinity for each queue IRQ',
    note: ok
      ? single.length > 0 && cores > 1
        ? `${single.join(', ')} has one queue interrupt: spread receive work with RPS (echo <cpu mask> > /sys/class/net/<if>/queues/rx-0/rps_cpus)`
        : ''
      : `every queue interrupt of ${failing.join(', ')} lands on one core, which then does all the network work`,
  };
}

export function runDoctor(input: DoctorInput): DoctorReport {
  const cores = system.readCores();
  const limit = input.processes === undefined ? null : processDescriptorLimit();
  let processes = 1;
  if (input.processes === 'auto') {
    const auto = limit === null ? null : autoProcesses(input.sessions, limit);
    processes = auto === null || !Number.isFinite(auto.processes) ? 1 : Math.min(auto.processes, MAX_PROCESSES);
  } else if (input.processes !== undefined) {
    processes = input.processes;
  }
  // As `c10m serve`: with several processes and no --workgroups, the cores shared among them (at least one each).
  const workgroups = input.workgroups ?? (processes > 1 ? Math.max(1, Math.floor(cores / processes)) : cores);
  const profile = computeProfile({ sessions: input.sessions, workgroups, processes, memoryPerSessionBytes: input.memoryPerSessionBytes, publicPort: input.publicPort, adminPort: input.adminPort });
  const needs = profile.needs;
  // With the clients on this host, both ends of every session are its sockets.
  const sockets = input.loopbackClients === true ? 2 : 1;
  // The TCP memory fixes are the profile's for every socket on this host.
  const tcpProfile = sockets === 1 ? profile : computeProfile({ ...profile.input, sessions: needs.sessions * sockets });
  const rows: DoctorRow[] = [
    ...(input.processes === undefined ? [] : [processesRow(input, profile, limit)]),
    ...descriptorRows(profile),
    atLeastRow(profile, 'fs.nr_open', 'fs.nr_open', needs.descriptorsPerProcess, 0, 'no process can have more descriptors than fs.nr_open'),
    fileMaxRow(profile, input.loopbackClients === true),
    atLeastRow(
      tcpProfile,
      'net.ipv4.tcp_mem (max, pages)',
      'net.ipv4.tcp_mem',
      needs.tcpMemPages * sockets,
      2,
      'beyond the cap TCP drops data instead of queueing it' + (sockets > 1 ? " (the clients' sockets on this host count too)" : ''),
    ),
    sendBufferRow(tcpProfile, needs.sessions * sockets),
    atLeastRow(profile, 'net.core.somaxconn', 'net.core.somaxconn', needs.listenBacklog, 0, `the kernel cuts uSockets' listen backlog (${needs.listenBacklog}) to somaxconn`),
    atLeastRow(profile, 'net.ipv4.tcp_max_syn_backlog', 'net.ipv4.tcp_max_syn_backlog', needs.listenBacklog, 0, 'half-open connections beyond it fall back to syncookies or are dropped'),
    portRangeRow(profile),
    conntrackRow(profile),
    hugePagesRow(profile),
    memoryRow(profile),
    coresRow(profile),
    irqRow(),
    ...(input.loopbackClients === true ? [loopbackRow(profile, limit ?? processDescriptorLimit())] : []),
  ];
  return { sessions: needs.sessions, processes: needs.processes, workgroups: needs.workgroups, ok: rows.every((r) => r.ok), rows };
}

/** The report as a plain-text table, then fixes and notes. */
export function formatDoctorReport(report: DoctorReport): string {
  const header = ['check', 'needed', 'actual', 'result', 'fix'];
  const body = report.rows.map((r) => [r.check, r.needed, r.actual, !r.ok ? 'FAIL' : r.actual === NOT_VISIBLE ? 'unverified' : 'pass', r.fix]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  // The fix column is last and left unpadded.
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const wg = `${report.workgroups} workgroup${report.workgroups === 1 ? '' : 's'}`;
  const shape = report.processes > 1 ? `${report.processes} node processes x ${wg}` : wg;
  const out = [`c10m doctor: ${report.sessions} sessions, ${shape}`, '', line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  const notes = report.rows.filter((r) => r.note);
  if (notes.length > 0) {
    out.push('', 'notes:');
    for (const r of notes) out.push(`  ${r.check}: ${r.note}`);
  }
  const failed = report.rows.filter((r) => !r.ok).length;
  out.push('', report.ok ? 'all checks pass' : `${failed} of ${report.rows.length} checks fail`);
  return out.join('\n') + '\n';
}
