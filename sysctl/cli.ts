// The operator commands `c10m sysctl` and `c10m doctor`, registered on the
// server's commander program, and the capacity warning `c10m serve` prints
// at start. Exit codes: 0 success (doctor: every check passes), 1 doctor
// checks fail or a file could not be written, 2 bad flags.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { formatDoctorReport, runDoctor } from './doctor';
import { computeProfile, descriptorsNeeded, MAX_PROFILE_SESSIONS, renderLimits, renderSysctl, sessionsForDescriptors, sessionsLabel } from './profile';
import * as system from './system';
import { DEFAULT_MAX_SESSIONS, MAX_PROCESSES } from './costs';

export const EXIT_OK = 0;
export const EXIT_CHECKS_FAILED = 1;
export const EXIT_BAD_FLAGS = 2;

/**
 * Sessions `c10m doctor` and `c10m sysctl` assume without --sessions: what
 * `c10m serve` is sized for by default (--max-sessions), so that the doctor
 * command serve's capacity warning names checks the same number.
 */
export const DEFAULT_SESSIONS = DEFAULT_MAX_SESSIONS;

/** "10000000", "10_000_000", "10m", "500k" -> a whole number >= 1 (commander argParser). */
export function parseCount(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.replace(/_/g, ''));
  const value = m ? Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]) ? 1e3 : 1e6) : NaN;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError('expected a whole number of at least 1 (10000000, 10_000_000, 10m or 500k).');
  }
  return value;
}

function parseSessions(text: string): number {
  const value = parseCount(text);
  if (value > MAX_PROFILE_SESSIONS) throw new InvalidArgumentError(`at most ${MAX_PROFILE_SESSIONS} sessions per host.`);
  return value;
}

function parseWorkgroups(text: string): number {
  const value = parseCount(text);
  if (value > 1024) throw new InvalidArgumentError('at most 1024 workgroups.');
  return value;
}

function parseProcesses(text: string): number {
  const value = parseCount(text);
  if (value > MAX_PROCESSES) throw new InvalidArgumentError(`at most ${MAX_PROCESSES} processes.`);
  return value;
}

/** A number of processes, or auto (as `c10m serve --processes auto`). */
function parseProcessesOrAuto(text: string): number | 'auto' {
  return text === 'auto' ? 'auto' : parseProcesses(text);
}

function parseBytes(text: string): number {
  const value = parseCount(text);
  if (value > 1 << 20) throw new InvalidArgumentError('at most 1048576 bytes per session.');
  return value;
}

/** Bad flags end the process with EXIT_BAD_FLAGS after commander's one-line message; help exits 0. */
function exitOnUsageError(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_BAD_FLAGS);
}

interface SysctlFlags {
  sessions: number;
  processes?: number;
  workgroups?: number;
  memoryPerSession?: number;
  format: 'sysctl' | 'limits' | 'both';
  out?: string;
}

interface DoctorFlags {
  sessions: number;
  maxSessions?: number;
  processes?: number | 'auto';
  workgroups?: number;
  memoryPerSession?: number;
  loopbackClients?: boolean;
  json?: boolean;
}

function sysctlAction(flags: SysctlFlags): void {
  const processes = flags.processes ?? 1;
  const profile = computeProfile({
    sessions: flags.sessions,
    processes,
    // As `c10m serve`: with several processes and no --workgroups, the cores shared among them.
    workgroups: flags.workgroups ?? (processes > 1 ? Math.max(1, Math.floor(system.readCores() / processes)) : system.readCores()),
    memoryPerSessionBytes: flags.memoryPerSession,
  });
  const label = sessionsLabel(profile.input.sessions);
  const files: Array<[string, string]> = [];
  if (flags.format !== 'limits') files.push([`c10m-${label}.conf`, renderSysctl(profile)]);
  if (flags.format !== 'sysctl') files.push([`limits-${label}.conf`, renderLimits(profile)]);
  if (flags.out === undefined) {
    process.stdout.write(files.map(([name, text]) => (files.length > 1 ? `# ---- ${name}\n${text}` : text)).join('\n'));
    return;
  }
  try {
    fs.mkdirSync(flags.out, { recursive: true });
    for (const [name, text] of files) {
      const file = path.join(flags.out, name);
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${file}\n`);
    }
  } catch (err) {
    process.stderr.write(`c10m sysctl: cannot write to ${flags.out}: ${(err as Error).message}\n`);
    process.exitCode = EXIT_CHECKS_FAILED;
  }
}

function doctorAction(flags: DoctorFlags): void {
  const report = runDoctor({
    sessions: flags.maxSessions ?? flags.sessions,
    processes: flags.processes,
    workgroups: flags.workgroups,
    memoryPerSessionBytes: flags.memoryPerSession,
    loopbackClients: flags.loopbackClients,
  });
  process.stdout.write(flags.json ? JSON.stringify(report, null, 2) + '\n' : formatDoctorReport(report));
  process.exitCode = report.ok ? EXIT_OK : EXIT_CHECKS_FAILED;
}

/** Adds `sysctl` and `doctor` to the server's program. */
export function registerOpsCommands(program: Command): void {
  program
    .command('sysctl')
    .description('print the sysctl.d and limits.conf files computed for a target number of sessions, one comment per line saying why')
    .option('--sessions <n>', `target concurrent sessions on this host (10000000, 10m, 500k; default ${DEFAULT_SESSIONS}, serve's --max-sessions default)`, parseSessions, DEFAULT_SESSIONS)
    .option('--processes <n>', 'node processes the sessions are spread over (c10m serve --processes; default 1): descriptor limits per process, system-wide counts N times them', parseProcesses)
    .option('--workgroups <w>', "workgroups the server will run, per process (default: this machine's cores, shared among the processes)", parseWorkgroups)
    .option('--memory-per-session <bytes>', 'arena bytes per session, for huge pages and memory (default: measured 1024)', parseBytes)
    .addOption(new Option('--format <format>', 'which file to print').choices(['sysctl', 'limits', 'both']).default('both'))
    .option('--out <dir>', 'write c10m-<N>.conf and limits-<N>.conf into this folder instead of printing them')
    .exitOverride(exitOnUsageError)
    .action(sysctlAction);

  program
    .command('doctor')
    .description('compare what N sessions need with this system (limits, sysctls, huge pages, memory, cores, conntrack, IRQs); exit 0 only when every check passes')
    .option('--sessions <n>', `target concurrent sessions on this host (default ${DEFAULT_SESSIONS}, serve's --max-sessions default)`, parseSessions, DEFAULT_SESSIONS)
    .option('--max-sessions <n>', 'the same as --sessions, as c10m serve names it', parseSessions)
    .option('--processes <n|auto>', 'node processes, as c10m serve --processes: N, or auto (how many this descriptor limit needs; the doctor says)', parseProcessesOrAuto)
    .option('--workgroups <w>', "workgroups the server will run, per process (default: this machine's cores, shared among the processes)", parseWorkgroups)
    .option('--memory-per-session <bytes>', 'arena bytes per session (default: measured 1024)', parseBytes)
    .option('--loopback-clients', "a benchmark's clients run on this host over loopback: check their source addresses, processes and descriptors too")
    .option('--json', 'print the rows as JSON instead of a table')
    .exitOverride(exitOnUsageError)
    .action(doctorAction);
}

/**
 * For `c10m serve` at start: a warning when maxSessions sessions need more
 * descriptors than this process may open, naming the doctor command to run;
 * null when they fit (or the limit cannot be read).
 */
export function capacityWarning(maxSessions: number, workgroups: number = system.readCores()): string | null {
  if (!Number.isFinite(maxSessions) || maxSessions < 1) return null;
  const limits = system.readDescriptorLimits();
  if (!limits) return null;
  const need = descriptorsNeeded(maxSessions, workgroups);
  if (limits.soft >= need) return null;
  const caps = system.readCapabilities();
  const canRaise = caps ? system.hasCapability(caps.effective, system.CAP_SYS_RESOURCE) : false;
  const most = sessionsForDescriptors(limits.soft, workgroups);
  const hard = Number.isFinite(limits.hard) ? String(limits.hard) : 'unlimited';
  return (
    `configured for up to ${maxSessions} sessions, which need ${need} descriptors, but this process may open ${limits.soft} ` +
    `(RLIMIT_NOFILE soft ${limits.soft}, hard ${hard}` +
    (limits.hard < need && !canRaise ? '; the hard limit cannot be raised here: no CAP_SYS_RESOURCE' : '') +
    `): accepts beyond about ${most} sessions will fail with EMFILE. ` +
    `Run \`c10m doctor --sessions ${maxSessions}\` for what to change.`
  );
}
