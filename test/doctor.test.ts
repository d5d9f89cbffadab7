// `c10m doctor` against the real /proc of this machine (no mocks), the
// capacity warning `c10m serve` prints, and the exit codes of the ops
// commands run in a child process through a commander program built from
// registerOpsCommands (sysctl/main.ts, bundled with esbuild).
//
// Machine facts (docs/ARCHITECTURE.md, "Limits of the machines we build on"): the hard descriptor limit is 20,000 and
// even root cannot raise it (no CAP_SYS_RESOURCE).

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSync } from 'esbuild';
import { OPTIONS } from '../server/config';
import { capacityWarning } from '../sysctl/cli';
import { DoctorReport, DoctorRow, formatDoctorReport, runDoctor } from '../sysctl/doctor';
import { computeProfile, renderSysctl } from '../sysctl/profile';
import { packageRoot } from '../native-io/package-root';

const ROOT = packageRoot();

function row(report: DoctorReport, check: string): DoctorRow {
  const found = report.rows.find((r) => r.check === check);
  if (!found) throw new Error(`no row ${check} in ${report.rows.map((r) => r.check).join(', ')}`);
  return found;
}

/** The hard descriptor limit as a shell started from here reports it (an independent reading). */
function shellHardLimit(): number {
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

describe('doctor on this machine', () => {
  const big = runDoctor({ sessions: 10_000_000, workgroups: 2 });

  test('reports the hard descriptor limit of 20,000, as the shell sees it', () => {
    expect(shellHardLimit()).toBe(20_000);
    const hard = row(big, 'descriptors, hard limit');
    expect(hard.actual).toBe(String(shellHardLimit()));
    expect(hard.needed).toBe('>= 10000080');
    expect(hard.ok).toBe(false);
  });

  test('says plainly that the limit cannot be raised here, and raising it really fails', () => {
    const raise = spawnSync('sh', ['-c', 'ulimit -Hn 20001'], { encoding: 'utf8' });
    expect(raise.status).not.toBe(0);
    const hard = row(big, 'descriptors, hard limit');
    expect(hard.note).toMatch(/^cannot be raised by this process: the hard limit is 20000 and CAP_SYS_RESOURCE \(bit 24 of CapEff/);
    expect(hard.note).toContain('at most 19920 sessions');
    expect(hard.fix).toContain('LimitNOFILE=12000256');
    // the soft row does not pretend ulimit -Sn would help
    expect(row(big, 'descriptors, soft limit').fix).toBe('raise the hard limit (next row)');
  });

  test('the limit holds 100 sessions: descriptor rows pass', () => {
    const small = runDoctor({ sessions: 100, workgroups: 2 });
    expect(row(small, 'descriptors, hard limit')).toMatchObject({ ok: true, actual: '20000', needed: '>= 180', fix: '', note: '' });
    expect(row(small, 'descriptors, soft limit').ok).toBe(true);
  });

  test('sysctl rows show the values in /proc/sys', () => {
    const nrOpen = fs.readFileSync('/proc/sys/fs/nr_open', 'utf8').trim();
    expect(row(big, 'fs.nr_open').actual).toBe(nrOpen);
    const tcpMem = fs.readFileSync('/proc/sys/net/ipv4/tcp_mem', 'utf8').trim().split(/\s+/).join(' ');
    expect(row(big, 'net.ipv4.tcp_mem (max, pages)').actual).toBe(tcpMem);
    const somaxconn = Number(fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    expect(row(big, 'net.core.somaxconn')).toMatchObject({ actual: String(somaxconn), ok: somaxconn >= 512 });
  });

  test('a failing sysctl row carries the profile value as its fix', () => {
    const nrOpen = row(big, 'fs.nr_open');
    const nrOpenNow = Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8'));
    expect(nrOpen.ok).toBe(nrOpenNow >= 10_000_080);
    if (!nrOpen.ok) expect(nrOpen.fix).toBe('sysctl -w fs.nr_open=12000256');
  });

  test('huge pages and memory come from /proc/meminfo', () => {
    const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
    const total = Number(/HugePages_Total:\s+(\d+)/.exec(meminfo)![1]);
    const free = Number(/HugePages_Free:\s+(\d+)/.exec(meminfo)![1]);
    expect(row(big, 'huge pages').actual).toMatch(new RegExp(`^${free} free of ${total}, THP `));
    const memTotalGiB = (Number(/MemTotal:\s+(\d+)/.exec(meminfo)![1]) * 1024) / 2 ** 30;
    expect(row(big, 'memory').actual).toContain(`of ${memTotalGiB.toFixed(1)} GiB`);
    // 10M idle sessions need ~48 GiB; this 24 GiB machine cannot hold them
    expect(row(big, 'memory').ok).toBe(memTotalGiB >= 48);
  });

  test('the report passes only when every row passes, and the table says so', () => {
    expect(big.ok).toBe(false);
    const text = formatDoctorReport(big);
    expect(text).toMatch(/^c10m doctor: 10000000 sessions, 2 workgroups/);
    const failing = big.rows.filter((r) => !r.ok).length;
    expect(text).toContain(`${failing} of ${big.rows.length} checks fail`);
    expect(text).toMatch(/descriptors, hard limit\s+>= 10000080\s+20000\s+FAIL\s+LimitNOFILE=/);
  });
});

describe('capacityWarning (for c10m serve)', () => {
  test('warns when the configured sessions need more descriptors than the limit, naming the doctor command', () => {
    const warning = capacityWarning(10_000_000, 2);
    expect(warning).not.toBeNull();
    expect(warning).toContain('c10m doctor --sessions 10000000');
    expect(warning).toContain('may open 20000');
    expect(warning).toContain('no CAP_SYS_RESOURCE');
    expect(warning).toContain('about 19920 sessions');
  });

  test('is silent exactly up to what 20,000 descriptors hold', () => {
    expect(capacityWarning(100, 2)).toBeNull();
    expect(capacityWarning(19_920, 2)).toBeNull();
    expect(capacityWarning(19_921, 2)).toMatch(/19921 sessions, which need 20001 descriptors/);
  });
});

describe('ops commands in a child process', () => {
  let dir: string;
  let entry: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-ops-'));
    entry = path.join(dir, 'c10m-ops.js');
    buildSync({ entryPoints: [path.join(ROOT, 'sysctl/main.ts')], bundle: true, platform: 'node', target: 'node20', outfile: entry, logLevel: 'error' });
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function run(...args: string[]) {
    const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  test('doctor exits 1 when a check fails (10M sessions here), with the table on stdout', () => {
    const r = run('doctor', '--sessions', '10000000');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/descriptors, hard limit .*FAIL/);
    expect(r.stdout).toContain('cannot be raised by this process');
  });

  test('doctor exits 0 when every check passes (100 sessions here), and --json agrees', () => {
    const r = run('doctor', '--sessions', '100', '--json');
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(report.rows.filter((x) => !x.ok)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(r.code).toBe(0);
  });

  test('doctor --json with failures exits 1 and lists rows with all fields', () => {
    const r = run('doctor', '--sessions', '10m', '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(report.ok).toBe(false);
    for (const x of report.rows) expect(Object.keys(x).sort()).toEqual(['actual', 'check', 'fix', 'needed', 'note', 'ok']);
  });

  test.each([
    [['doctor', '--sessions', 'abc']],
    [['doctor', '--sessions', '-5']],
    [['doctor', '--bogus']],
    [['doctor', '--workgroups', '0']],
    [['sysctl', '--sessions', '0']],
    [['sysctl', '--sessions', '10m', '--format', 'xml']],
    [['sysctl', '--sessions', '5000000000']],
  ])('bad flags %j exit 2 with a message, never a stack trace', (args) => {
    const r = run(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
  });

  test("doctor and sysctl without --sessions assume serve's --max-sessions default, the number serve's warning names", () => {
    const serveDefault = OPTIONS.find((o) => o.key === 'maxSessions')!.default();
    expect(serveDefault).toBe(1_000_000);
    const doctor = run('doctor', '--workgroups', '2', '--json');
    expect((JSON.parse(doctor.stdout) as DoctorReport).sessions).toBe(serveDefault);
    const sysctl = run('sysctl', '--workgroups', '2', '--format', 'sysctl');
    expect(sysctl.code).toBe(0);
    expect(sysctl.stdout).toContain(`# c10m kernel profile for ${serveDefault} sessions, 2 workgroups`);
    expect(capacityWarning(serveDefault as number, 2)).toContain(`Run \`c10m doctor --sessions ${serveDefault}\``);
    expect(run('doctor', '--help').stdout).toContain(`default ${serveDefault}`);
  });

  test('sysctl prints the same file as the checked-in 10M profile', () => {
    const r = run('sysctl', '--sessions', '10m', '--workgroups', '12', '--format', 'sysctl');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(fs.readFileSync(path.join(ROOT, 'sysctl/c10m-10m.conf'), 'utf8'));
  });

  test('sysctl --out writes both files', () => {
    const out = path.join(dir, 'out');
    const r = run('sysctl', '--sessions', '250000', '--workgroups', '4', '--out', out);
    expect(r.code).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['c10m-250k.conf', 'limits-250k.conf']);
    expect(fs.readFileSync(path.join(out, 'c10m-250k.conf'), 'utf8')).toBe(renderSysctl(computeProfile({ sessions: 250_000, workgroups: 4 })));
  });

  test('sysctl --help exits 0', () => {
    const r = run('sysctl', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--memory-per-session');
  });
});
