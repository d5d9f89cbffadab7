// sysctl/apply.sh for real, inside a fresh network namespace (unshare --net)
// so that the per-namespace net.* keys it changes are this test's own and
// the machine's kernel settings are never touched. Outside a namespace only
// --dry-run runs, which reads and writes nothing but its report.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../native-io/package-root';

const ROOT = packageRoot();
const APPLY = path.join(ROOT, 'sysctl/apply.sh');

// A directory of its own for each test: a test that fails leaves nothing for the next one to trip on.
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-apply-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs a bash script in a new network namespace; returns its output and status. */
function inNamespace(script: string) {
  const r = spawnSync('unshare', ['--net', 'bash', '-c', script], {
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, A: APPLY, TMPDIR: dir },
    timeout: 20_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, error: r.error };
}

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const show = 'for k in core/somaxconn ipv4/ip_local_port_range ipv4/tcp_rmem ipv4/tcp_max_syn_backlog; do echo "$k=$(tr -s "[:space:]" " " < /proc/sys/net/$k | sed "s/ $//")"; done';

function values(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(core\/\w+|ipv4\/\w+)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

const profile = `# test profile: keys a network namespace has of its own
# [at least] a minimum that the namespace already exceeds
net.core.somaxconn = 1024
# exact values
net.ipv4.ip_local_port_range = 10240 65535
net.ipv4.tcp_rmem = 4096 4096 16384
# [at least] a minimum above the default
net.ipv4.tcp_max_syn_backlog = 8192
# optional: read-only in a child namespace
-net.netfilter.nf_conntrack_max = 999999
`;

test('apply saves the old values first, sets the new ones, and --restore puts them back', () => {
  write('p.conf', profile);
  const r = inNamespace(`${show}; echo ---; "$A" --save saved.conf p.conf; echo "apply=$?"; ${show}; echo ---; "$A" --restore saved.conf; echo "restore=$?"; ${show}`);
  expect(r.error).toBeUndefined();
  const [before, applied, restored] = r.stdout.split('---').map(values);
  expect(r.stdout).toContain('apply=0');
  expect(r.stdout).toContain('restore=0');
  expect(before['ipv4/tcp_rmem']).not.toBe('4096 4096 16384');
  expect(applied).toEqual({
    'core/somaxconn': before['core/somaxconn'], // kept: already at least 1024
    'ipv4/ip_local_port_range': '10240 65535',
    'ipv4/tcp_rmem': '4096 4096 16384',
    'ipv4/tcp_max_syn_backlog': '8192',
  });
  expect(restored).toEqual(before);
  expect(r.stdout).toMatch(/keep net\.core\.somaxconn = \d+ \(at least 1024\)/);
  expect(r.stdout).toContain('skip net.netfilter.nf_conntrack_max: cannot be written here (optional)');
  const saved = fs.readFileSync(path.join(dir, 'saved.conf'), 'utf8');
  expect(saved).toContain(`net.ipv4.tcp_rmem = ${before['ipv4/tcp_rmem']}`);
  expect(saved).not.toContain('net.core.somaxconn');
});

test('--scoped applies, runs the command, restores, and exits with its status', () => {
  write('p.conf', profile);
  const r = inNamespace(`"$A" --scoped p.conf -- sh -c 'echo "inside=$(tr -s "[:space:]" " " < /proc/sys/net/ipv4/tcp_rmem)"; exit 7'; echo "scoped=$?"; ${show}`);
  expect(r.stdout).toContain('inside=4096 4096 16384');
  expect(r.stdout).toContain('scoped=7');
  expect(values(r.stdout)['ipv4/tcp_rmem']).not.toBe('4096 4096 16384');
  // its temporary save file is gone after a clean restore
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('c10m-sysctl-saved-'))).toEqual([]);
});

test('a required key that cannot be written puts back what was changed and exits 1', () => {
  // net.core.rmem_max is host-wide: read-only inside a child namespace
  write('bad.conf', 'net.ipv4.tcp_rmem = 4096 4096 16384\nnet.core.rmem_max = 16384\n');
  const r = inNamespace(`${show}; echo ---; "$A" --save s2.conf bad.conf; echo "apply=$?"; ${show}`);
  const [before, after] = r.stdout.split('---').map(values);
  expect(r.stdout).toContain('apply=1');
  expect(r.stderr).toContain('cannot write net.core.rmem_max');
  expect(after).toEqual(before);
});

test('--dry-run on the 10M profile reports its plan and changes nothing', () => {
  const nrOpen = fs.readFileSync('/proc/sys/fs/nr_open', 'utf8').trim();
  const r = spawnSync(APPLY, ['--dry-run', path.join(ROOT, 'sysctl/c10m-10m.conf')], { encoding: 'utf8', env: { ...process.env, TMPDIR: dir } });
  expect(r.status).toBe(0);
  if (Number(nrOpen) < 12_000_256) expect(r.stdout).toContain(`would set fs.nr_open = 12000256 (was ${nrOpen})`);
  expect(r.stdout).toMatch(/would save the previous values to /);
  expect(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()).toBe(nrOpen);
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('c10m-sysctl-saved-'))).toEqual([]);
});

test.each([[['--bogus']], [[]], [['--restore']], [['--scoped', 'x.conf']], [['a.conf', 'b.conf']]])('bad usage %j exits 2', (args) => {
  const r = spawnSync(APPLY, args, { encoding: 'utf8', cwd: dir });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^apply\.sh: /);
});

test("the generated profile's socket buffer sizes are accepted by the running kernel", () => {
  // The keys of the shipped profile that a network namespace has of its own: written for real here.
  const shipped = fs.readFileSync(path.join(ROOT, 'sysctl/c10m-10m.conf'), 'utf8');
  const lines = shipped.split('\n').filter((l) => /^net\.ipv4\.tcp_[rw]mem = /.test(l));
  expect(lines).toHaveLength(2);
  write('buffers.conf', lines.join('\n') + '\n');
  const r = inNamespace(`"$A" buffers.conf; echo "apply=$?"; tr -s "[:space:]" " " < /proc/sys/net/ipv4/tcp_rmem; echo; tr -s "[:space:]" " " < /proc/sys/net/ipv4/tcp_wmem`);
  expect(r.stderr).toBe('');
  expect(r.stdout).toContain('apply=0');
  for (const line of lines) expect(r.stdout).toContain(line.split(' = ')[1]);
});
