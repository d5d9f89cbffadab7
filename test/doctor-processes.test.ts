// `c10m doctor --processes N|auto` and the sysctl profile for N node
// processes (issue 18), against the real /proc of this machine: its hard
// descriptor limit is 20,000 and cannot be raised (docs/ARCHITECTURE.md),
// so --max-sessions 1000000 needs 53 processes here.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSync } from 'esbuild';
import { planProcesses } from '../server/processes';
import { resolveConfig } from '../server/config';
import { AUTO_PROCESS_HEADROOM, DESCRIPTOR_RESERVE_BASE, DESCRIPTOR_RESERVE_PER_WORKGROUP, FLOORS, SYSTEM_FILES_RESERVE } from '../sysctl/costs';
import { DoctorReport, DoctorRow, formatDoctorReport, runDoctor } from '../sysctl/doctor';
import { autoProcesses, computeProfile, memoryNeeded, profileEntry, renderLimits, renderSysctl } from '../sysctl/profile';
import { packageRoot } from '../native-io/package-root';

function row(report: DoctorReport, check: string): DoctorRow {
  const found = report.rows.find((r) => r.check === check);
  if (!found) throw new Error(`no row ${check} in ${report.rows.map((r) => r.check).join(', ')}`);
  return found;
}

/** The arithmetic by hand: (limit - 64 - 8) x 0.95 sessions a process. */
function byHand(sessions: number, limit: number): { per: number; processes: number } {
  const per = Math.floor((limit - DESCRIPTOR_RESERVE_BASE - DESCRIPTOR_RESERVE_PER_WORKGROUP) * (1 - AUTO_PROCESS_HEADROOM));
  return { per, processes: Math.ceil(sessions / per) };
}

test('autoProcesses is the arithmetic serve --processes auto logs, for any limit', () => {
  expect(byHand(1_000_000, 20_000)).toEqual({ per: 18931, processes: 53 });
  for (const limit of [20_000, 65_536, 1_048_576]) {
    for (const sessions of [100, 1_000_000, 10_000_000]) {
      const a = autoProcesses(sessions, limit);
      const h = byHand(sessions, limit);
      expect(a).toEqual({ sessionsPerProcess: h.per, processes: h.processes });
      const config = resolveConfig({ processes: 'auto', maxSessions: sessions, engine: 'redis', redisUrl: ['redis://127.0.0.1:1'] } as never, {});
      if (h.processes <= 1024) expect(planProcesses(config, false, limit, 2)).toMatchObject({ processes: h.processes, sessionsPerProcess: h.per });
    }
  }
});

describe('doctor --max-sessions 1000000 --processes auto on this machine', () => {
  const report = runDoctor({ sessions: 1_000_000, processes: 'auto' });

  test('says how many processes auto starts (53), of how many sessions, and that the descriptor limit allows it', () => {
    expect(report.processes).toBe(53);
    expect(report.workgroups).toBe(1);
    const p = row(report, 'processes (--processes auto)');
    expect(p.ok).toBe(true);
    expect(p.needed).toBe('53 x 18868 sessions = ceil(1000000 / 18931), at most 1024');
    expect(p.actual).toMatch(/^descriptor limit 20000 per process, \d+ cores$/);
    expect(p.note).toContain('18931 sessions per process = (descriptor limit 20000 - 64 reserved - 8 per workgroup) less 5% headroom');
    expect(p.note).toContain('c10m serve --processes auto --max-sessions 1000000 --engine redis starts 53 node processes of 1 workgroup and a top supervisor');
    // Per process: 18,868 sessions + 72 of its own, under the 20,000 it has.
    expect(row(report, 'descriptors, hard limit')).toMatchObject({ ok: true, needed: '>= 18940', actual: '20000' });
    expect(row(report, 'fs.nr_open')).toMatchObject({ ok: true, needed: '>= 18940' });
    expect(formatDoctorReport(report)).toMatch(/^c10m doctor: 1000000 sessions, 53 node processes x 1 workgroup\n/);
  });

  test('system-wide counts are the processes together: fs.file-max for 53 x 18,940, tcp_mem for every socket', () => {
    const need = Number(row(report, 'fs.file-max').needed.replace('>= ', ''));
    expect(need).toBeGreaterThanOrEqual(53 * 18_940);
    expect(need).toBeLessThan(53 * 18_940 + 1_000_000);
    expect(row(report, 'net.ipv4.tcp_mem (max, pages)').needed).toBe('>= 1000000');
  });

  test('one process for a million sessions fails the descriptor rows, and the note names the processes auto would start', () => {
    const one = runDoctor({ sessions: 1_000_000, processes: 1, workgroups: 1 });
    const hard = row(one, 'descriptors, hard limit');
    expect(hard.ok).toBe(false);
    expect(hard.needed).toBe('>= 1000072');
    expect(hard.note).toContain('c10m serve --processes auto --max-sessions 1000000: 53 here');
    const three = runDoctor({ sessions: 1_000_000, processes: 3 });
    expect(three.workgroups).toBe(1);
    expect(row(three, 'descriptors, hard limit').needed).toBe('>= 333406');
    expect(row(three, 'processes').needed).toBe('3 x 333334 sessions, at most 1024');
  });

  test('with the clients on this host: source addresses from the ephemeral range, client processes, and twice the sockets', () => {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    const loop = runDoctor({ sessions: 1_000_000, processes: 'auto', loopbackClients: true });
    const r = row(loop, 'loopback clients');
    const reservedText = fs.readFileSync('/proc/sys/net/ipv4/ip_local_reserved_ports', 'utf8').trim();
    if (reservedText === '') expect(r.needed).toBe(`${Math.ceil(1_000_000 / (high - low + 1))} source addresses of 127.0.0.0/8, ${Math.ceil(1_000_000 / 19_928)} client processes`);
    expect(r.actual).toContain(`ephemeral ports ${low}-${high}`);
    expect(row(loop, 'net.ipv4.tcp_mem (max, pages)').needed).toBe('>= 2000000');
    expect(row(loop, 'net.ipv4.tcp_wmem (default)').needed).toBe('2000000 x default <= tcp_mem cap');
    const fileMax = Number(row(loop, 'fs.file-max').needed.replace('>= ', ''));
    expect(fileMax).toBeGreaterThanOrEqual(53 * 18_940 + 1_000_000);
  });
});

describe('the sysctl profile for N processes', () => {
  test('descriptor limits per process, system-wide counts N times them; one process is the profile as before', () => {
    const one = computeProfile({ sessions: 1_000_000, workgroups: 1 });
    const many = computeProfile({ sessions: 1_000_000, workgroups: 1, processes: 53 });
    // ceil(1,000,000 / 53) = 18,868 sessions + 72: x1.2 = 22,728, which the 65,536 floor covers.
    expect(many.needs).toMatchObject({ processes: 53, sessionsPerProcess: 18_868, descriptorsPerProcess: 18_940 });
    expect(many.limits[0].value).toBe(FLOORS.nofile);
    expect(profileEntry(many, 'fs.nr_open')?.value).toBe(String(FLOORS.nrOpen));
    expect(profileEntry(many, 'fs.file-max')?.value).toBe(String(53 * 65_536 + SYSTEM_FILES_RESERVE));
    expect(profileEntry(many, 'net.netfilter.nf_conntrack_max')?.value).toBe(String(53 * 65_536));
    // TCP memory is per socket, whatever the processes.
    expect(profileEntry(many, 'net.ipv4.tcp_mem')?.value).toBe(profileEntry(one, 'net.ipv4.tcp_mem')?.value);
    expect(many.needs.memoryBytes).toBe(memoryNeeded(1_000_000, 1, 1024, 53));
    expect(many.needs.memoryBytes).toBeGreaterThan(one.needs.memoryBytes);
    expect(renderSysctl(many)).toContain('# c10m kernel profile for 1000000 sessions, 53 node processes x 1 workgroups');
    expect(renderSysctl(many)).toContain('c10m sysctl --sessions 1000000 --processes 53 --workgroups 1');
    expect(renderLimits(many)).toContain('per node process: 18868 sessions (1000000 over 53 processes) + 72 descriptors of its own');
    expect(renderSysctl(one)).not.toContain('processes');
    expect(one.needs).toMatchObject({ processes: 1, sessionsPerProcess: 1_000_000, descriptorsPerProcess: 1_000_072 });
  });

  test.each([0, 1025, 1.5])('rejects %p processes with a sentence', (processes) => {
    expect(() => computeProfile({ sessions: 1000, processes })).toThrow(/processes must be a whole number from 1 to 1024/);
  });
});

describe('ops commands in a child process', () => {
  let dir: string;
  let entry: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-ops-processes-'));
    entry = path.join(dir, 'c10m-ops.js');
    buildSync({ entryPoints: [path.join(packageRoot(), 'sysctl/main.ts')], bundle: true, platform: 'node', target: 'node20', outfile: entry, logLevel: 'error' });
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function run(...args: string[]) {
    const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  test('doctor --max-sessions 1000000 --processes auto --json: 53 processes, the same rows as runDoctor', () => {
    const r = run('doctor', '--max-sessions', '1000000', '--processes', 'auto', '--json');
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(report).toMatchObject({ sessions: 1_000_000, processes: 53, workgroups: 1 });
    expect(r.code).toBe(report.ok ? 0 : 1);
    expect(row(report, 'processes (--processes auto)').ok).toBe(true);
  });

  test('sysctl --processes 53 writes the per-process limits; bad --processes values exit 2', () => {
    const r = run('sysctl', '--sessions', '1m', '--processes', '53', '--workgroups', '1', '--format', 'limits');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('# c10m descriptor limits for 1000000 sessions, 53 node processes x 1 workgroups.');
    for (const bad of [
      ['doctor', '--processes', 'many'],
      ['doctor', '--processes', '0'],
      ['sysctl', '--processes', 'auto'],
      ['sysctl', '--processes', '2000'],
    ]) {
      const b = run(...bad);
      expect(b.code).toBe(2);
      expect(b.stderr).toMatch(/error: /);
    }
  });
});
