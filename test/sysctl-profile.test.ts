// The computed kernel profile: known values for known N (worked out by hand
// from sysctl/costs.ts), monotonic growth with N, the rendered files, and
// the checked-in 10-million-session profile being exactly what the code
// computes.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../native-io/package-root';
import {
  computeProfile,
  descriptorsNeeded,
  memoryNeeded,
  Profile,
  profileEntry,
  profileNofile,
  renderLimits,
  renderSysctl,
  sessionsForDescriptors,
  sessionsForMemory,
  sessionsLabel,
} from '../sysctl/profile';

const ROOT = packageRoot();

function value(profile: Profile, key: string): string {
  const entry = profileEntry(profile, key);
  if (!entry) throw new Error(`no ${key} in the profile`);
  return entry.value;
}

describe('computeProfile: known values', () => {
  test('10 million sessions, 12 workgroups, 1 KiB per session', () => {
    const p = computeProfile({ sessions: 10_000_000, workgroups: 12, memoryPerSessionBytes: 1024 });
    // 10,000,000 + 64 + 8 x 12 = 10,000,160 descriptors; x 1.2 = 12,000,192, rounded up to 1024s.
    expect(p.needs.descriptorsPerProcess).toBe(10_000_160);
    expect(profileNofile(p)).toBe(12_000_256);
    expect(value(p, 'fs.nr_open')).toBe('12000256');
    expect(value(p, 'fs.file-max')).toBe(String(12_000_256 + 65_536));
    // one 4 KiB page per socket: 10M pages, pressure x1.25, cap x1.5
    expect(value(p, 'net.ipv4.tcp_mem')).toBe('10000000 12500000 15000000');
    // Linux 6.18 refuses a tcp_rmem minimum below 4096 (EINVAL); tcp_wmem takes 1024.
    expect(value(p, 'net.ipv4.tcp_rmem')).toBe('4096 4096 16384');
    expect(value(p, 'net.ipv4.tcp_wmem')).toBe('1024 4096 16384');
    expect(value(p, 'net.core.rmem_max')).toBe('16384');
    expect(value(p, 'net.core.wmem_max')).toBe('16384');
    // 10M / 256 = 39,063 -> 65,536 -> capped at 65,535
    expect(value(p, 'net.core.somaxconn')).toBe('65535');
    // 10M / 100 = 100,000 -> 131,072
    expect(value(p, 'net.ipv4.tcp_max_syn_backlog')).toBe('131072');
    expect(value(p, 'net.ipv4.ip_local_port_range')).toBe('10240 65535');
    expect(value(p, 'net.ipv4.ip_local_reserved_ports')).toBe('8080,9090');
    expect(value(p, 'net.netfilter.nf_conntrack_max')).toBe('12000256');
    // (10M x 1024 + 12 x 32 MiB) / 2 MiB = 10,642,653,184 / 2,097,152 = 5074.8 -> 5075
    expect(value(p, 'vm.nr_hugepages')).toBe('5075');
    expect(p.needs.hugePages).toBe(5075);
    expect(p.needs.tcpMemPages).toBe(10_000_000);
    // 10M x (1024 + 4096) + 64 MiB + 12 x (32 + 16) MiB
    expect(p.needs.memoryBytes).toBe(51_200_000_000 + 64 * 2 ** 20 + 12 * 48 * 2 ** 20);
  });

  test('1 million sessions, 4 workgroups', () => {
    const p = computeProfile({ sessions: 1_000_000, workgroups: 4 });
    // 1,000,096 x 1.2 = 1,200,115.2 -> 1172 x 1024
    expect(profileNofile(p)).toBe(1_200_128);
    expect(value(p, 'fs.nr_open')).toBe('1200128');
    expect(value(p, 'net.ipv4.tcp_mem')).toBe('1000000 1250000 1500000');
    expect(value(p, 'net.core.somaxconn')).toBe('4096');
    expect(value(p, 'net.ipv4.tcp_max_syn_backlog')).toBe('16384');
    // (1,024,000,000 + 4 x 33,554,432) / 2,097,152 = 552.3 -> 553
    expect(value(p, 'vm.nr_hugepages')).toBe('553');
  });

  test('a small N never writes a value under the common kernel defaults', () => {
    const p = computeProfile({ sessions: 1000, workgroups: 2 });
    expect(profileNofile(p)).toBe(65536);
    expect(value(p, 'fs.nr_open')).toBe('1048576');
    expect(value(p, 'fs.file-max')).toBe('1048576');
    expect(value(p, 'net.ipv4.tcp_mem')).toBe('65536 98304 131072');
    expect(value(p, 'net.netfilter.nf_conntrack_max')).toBe('262144');
    // ...but the strict needs still follow N
    expect(p.needs.descriptorsPerProcess).toBe(1000 + 64 + 16);
    expect(p.needs.tcpMemPages).toBe(1000);
  });

  test('memory per session drives huge pages and the memory plan', () => {
    const small = computeProfile({ sessions: 1_000_000, workgroups: 1, memoryPerSessionBytes: 256 });
    const large = computeProfile({ sessions: 1_000_000, workgroups: 1, memoryPerSessionBytes: 4096 });
    expect(Number(value(small, 'vm.nr_hugepages'))).toBe(Math.ceil((256e6 + 32 * 2 ** 20) / 2 ** 21));
    expect(Number(value(large, 'vm.nr_hugepages'))).toBe(Math.ceil((4096e6 + 32 * 2 ** 20) / 2 ** 21));
    expect(large.needs.memoryBytes - small.needs.memoryBytes).toBe(1_000_000 * (4096 - 256));
  });

  test('the ports given are the ones reserved', () => {
    const p = computeProfile({ sessions: 10, publicPort: 443, adminPort: 9100 });
    expect(value(p, 'net.ipv4.ip_local_reserved_ports')).toBe('443,9100');
    expect(p.notes.join('\n')).toContain('--dport 443 -j NOTRACK');
  });

  test.each([0, -1, 1.5, Number.NaN, 2_000_000_000])('rejects %p sessions with a sentence', (sessions) => {
    expect(() => computeProfile({ sessions })).toThrow(/sessions must be a whole number/);
  });
});

describe('computeProfile: monotonic in N', () => {
  const counts = [1, 10, 1000, 19_920, 65_536, 100_000, 1_000_000, 3_333_333, 10_000_000, 100_000_000, 1_000_000_000];
  const profiles = counts.map((sessions) => computeProfile({ sessions, workgroups: 8 }));

  test('every numeric value of every entry never decreases, and the N-driven ones grow', () => {
    const keys = profiles[0].sysctl.map((e) => e.key);
    for (const key of keys) {
      for (let i = 1; i < profiles.length; i++) {
        const before = value(profiles[i - 1], key)
          .split(/[ ,]/)
          .map(Number);
        const after = value(profiles[i], key).split(/[ ,]/).map(Number);
        after.forEach((v, j) => expect({ key, n: counts[i], v }).toEqual({ key, n: counts[i], v: Math.max(v, before[j]) }));
      }
    }
    // from 1M to 10M to 100M the sized entries strictly grow
    const grows = ['fs.nr_open', 'fs.file-max', 'net.ipv4.tcp_mem', 'vm.nr_hugepages', 'net.netfilter.nf_conntrack_max'];
    for (const key of grows) {
      const [a, b, c] = [6, 8, 9].map((i) => Number(value(profiles[i], key).split(' ')[0]));
      expect(a).toBeLessThan(b);
      expect(b).toBeLessThan(c);
    }
  });

  test('limits and needs grow with N', () => {
    for (let i = 1; i < profiles.length; i++) {
      expect(profileNofile(profiles[i])).toBeGreaterThanOrEqual(profileNofile(profiles[i - 1]));
      expect(profiles[i].needs.descriptorsPerProcess).toBeGreaterThan(profiles[i - 1].needs.descriptorsPerProcess);
      expect(profiles[i].needs.memoryBytes).toBeGreaterThan(profiles[i - 1].needs.memoryBytes);
      expect(profiles[i].needs.hugePages).toBeGreaterThanOrEqual(profiles[i - 1].needs.hugePages);
    }
  });

  test('the recommended values cover the strict needs for every N', () => {
    for (const p of profiles) {
      expect(profileNofile(p)).toBeGreaterThanOrEqual(p.needs.descriptorsPerProcess);
      expect(Number(value(p, 'fs.nr_open'))).toBeGreaterThanOrEqual(profileNofile(p));
      expect(Number(value(p, 'fs.file-max'))).toBeGreaterThan(profileNofile(p));
      const tcpMem = value(p, 'net.ipv4.tcp_mem').split(' ').map(Number);
      expect(tcpMem[0]).toBeGreaterThanOrEqual(p.needs.tcpMemPages);
      expect(tcpMem[0]).toBeLessThanOrEqual(tcpMem[1]);
      expect(tcpMem[1]).toBeLessThanOrEqual(tcpMem[2]);
      // the profile passes doctor's send-buffer check: N x tcp_wmem default <= tcp_mem cap
      expect(p.needs.sessions * Number(value(p, 'net.ipv4.tcp_wmem').split(' ')[1])).toBeLessThanOrEqual(tcpMem[2] * 4096);
      expect(Number(value(p, 'net.core.somaxconn'))).toBeGreaterThanOrEqual(p.needs.listenBacklog);
    }
  });
});

describe('inverse functions', () => {
  test('sessionsForDescriptors undoes descriptorsNeeded (19,920 sessions fit in 20,000 descriptors with 2 workgroups)', () => {
    expect(sessionsForDescriptors(20_000, 2)).toBe(19_920);
    expect(descriptorsNeeded(19_920, 2)).toBe(20_000);
    expect(descriptorsNeeded(19_921, 2)).toBe(20_001);
  });

  test('sessionsForMemory is the largest N whose memoryNeeded fits after the OS reserve', () => {
    const ram = 96 * 2 ** 30;
    const n = sessionsForMemory(ram, 12, 1024);
    const reserve = 2 * 2 ** 30;
    expect(memoryNeeded(n, 12, 1024) + reserve).toBeLessThanOrEqual(ram);
    expect(memoryNeeded(n + 1, 12, 1024) + reserve).toBeGreaterThan(ram);
  });

  test('sessionsLabel', () => {
    expect(sessionsLabel(10_000_000)).toBe('10m');
    expect(sessionsLabel(500_000)).toBe('500k');
    expect(sessionsLabel(1234)).toBe('1234');
  });
});

describe('rendered files', () => {
  const profile = computeProfile({ sessions: 10_000_000, workgroups: 12, memoryPerSessionBytes: 1024 });

  test('sysctl.d: every entry is one comment line saying why, then key = value', () => {
    const lines = renderSysctl(profile).split('\n');
    for (const e of profile.sysctl) {
      const at = lines.indexOf(`${e.optional ? '-' : ''}${e.key} = ${e.value}`);
      expect(at).toBeGreaterThan(0);
      expect(lines[at - 1]).toBe(`# ${e.mode === 'atLeast' ? '[at least] ' : ''}${e.why}`);
      expect(e.why).not.toContain('\n');
    }
    const settings = lines.filter((l) => l !== '' && !l.startsWith('#'));
    expect(settings).toHaveLength(profile.sysctl.length);
    expect(lines).toContain('-net.netfilter.nf_conntrack_max = 12000256');
  });

  test('limits.conf: soft and hard nofile for * and root, each with its comment', () => {
    const lines = renderLimits(profile).split('\n');
    const settings = lines.filter((l) => l !== '' && !l.startsWith('#'));
    expect(settings.map((l) => l.split(/\s+/))).toEqual([
      ['*', 'soft', 'nofile', '12000256'],
      ['*', 'hard', 'nofile', '12000256'],
      ['root', 'soft', 'nofile', '12000256'],
      ['root', 'hard', 'nofile', '12000256'],
    ]);
    for (const s of settings) expect(lines[lines.indexOf(s) - 1]).toMatch(/^# 10000000 sessions \+ 160 descriptors/);
  });

  test('the checked-in 10M profile is exactly what the code computes', () => {
    expect(fs.readFileSync(path.join(ROOT, 'sysctl/c10m-10m.conf'), 'utf8')).toBe(renderSysctl(profile));
    expect(fs.readFileSync(path.join(ROOT, 'sysctl/limits-10m.conf'), 'utf8')).toBe(renderLimits(profile));
  });
});
