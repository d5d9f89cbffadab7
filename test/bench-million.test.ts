// `c10m bench run million` (issue 18's proof) at a tiny scale: 400 sessions
// over 2 node processes on a real redis-server, a 10 s hold, the broadcast and
// the storm (every node process SIGKILLed, the fleet and the SDK sample
// back) all run, and every check of the scenario passes. At this scale
// nothing needs raising: the kernel settings are left as they were.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from './helpers/server';

jest.setTimeout(180_000);

const KEYS = ['fs/file-max', 'net/ipv4/tcp_mem', 'net/ipv4/ip_local_port_range', 'net/netfilter/nf_conntrack_max'];

function sysctls(): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const k of KEYS) {
    try {
      out[k] = fs.readFileSync(`/proc/sys/${k}`, 'utf8');
    } catch {
      out[k] = null;
    }
  }
  return out;
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-million-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('million at 400 sessions, 2 processes: held, counted, broadcast, storm survived without loss, sysctls untouched', async () => {
  const before = sysctls();
  const r = await runCli(['bench', 'run', 'million', '--sessions', '400', '--processes', '2', '--hold-seconds', '10', '--results-dir', dir, '--no-progress'], {}, 170_000);
  const done = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; files?: { json: string; markdown: string; svg: string } })
    .find((l) => l.msg === 'bench run done');
  expect({ code: r.code, done: done !== undefined, stderr: r.code === 0 ? '' : r.stderr.slice(-3000) }).toEqual({ code: 0, done: true, stderr: '' });
  expect(sysctls()).toEqual(before);
  // Each setting looked at, none raised.
  for (const key of ['fs.file-max', 'net.ipv4.tcp_mem', 'net.ipv4.ip_local_port_range']) expect(r.stderr).toMatch(new RegExp(`million: ${key.replace(/\./g, '\\.')} = [^:]+: kept`));
  expect(r.stderr).not.toMatch(/raised to/);

  const files = done?.files as { json: string; markdown: string; svg: string };
  const result = JSON.parse(fs.readFileSync(files.json, 'utf8')) as {
    scenario: string;
    checks: { name: string; ok: boolean; detail: string }[];
    targets: { name: string; figures: Record<string, number | string | null> }[];
    notes: string[];
  };
  expect(result.scenario).toBe('million');
  expect(result.checks.filter((c) => !c.ok)).toEqual([]);
  const names = result.checks.map((c) => c.name).join('\n');
  for (const part of [
    /ramp: 360 benchsub sessions held/,
    /no upgrade refused/,
    /holds all 400 sessions/,
    /hold: deliveries equal/,
    /broadcast: every session/,
    /storm: all 360 benchsub sessions back/,
    /storm: each of the 40 SDK sessions/,
  ])
    expect(names).toMatch(part);
  const f = result.targets[0].figures;
  expect(f).toMatchObject({ sessions: 400, benchsubSessions: 360, sdkSessions: 40, serverProcesses: 2, stormProcessesKilled: 2, rampRefused: 0, sampleMissing: 0 });
  expect(f.sampleAcked as number).toBeGreaterThan(0);
  expect(f.stormAllBackSeconds as number).toBeGreaterThan(0);
  expect(result.notes.join('\n')).toMatch(/projection: 10,000,000 x .* GiB of 64 GiB/);
  expect(fs.readFileSync(files.markdown, 'utf8')).toContain('| published record | 10,000,000 | 12 | 18 | 585 | 1,700 |');
  expect(fs.readFileSync(files.svg, 'utf8').startsWith('<svg')).toBe(true);
});
