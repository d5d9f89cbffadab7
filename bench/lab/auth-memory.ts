// What an authenticated session costs in memory (issue 16: at most +100 B
// per session over --auth none): c10m started once per mode (--auth none,
// then --auth jwt with benchsub's HS256 token per session), one workgroup,
// idle sessions each on its own topic (reference-scaled before its
// publisher starts), connected in steps (--steps 5000,19000: the first
// fleet, then a second one up to the next count, and so on). At 0 sessions
// and after every step: RSS (plain, then after a forced GC in every isolate
// through the inspector), anonymous RSS and the JS heap used. Per session:
// from the empty node to the last step, and the marginal slope between the
// first and the last step (what grows on towards a million sessions).
//
//   npm run lab:build && node dist-lab/bench/lab/auth-memory.js [--steps 5000,19000]
//       [--modes none,jwt] [--settle-seconds 3] [--serve-args '...'] [--node-args '...']
//
// Writes bench/results/auth-memory-<date>.{json,md}.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { envHeader } from '../env';
import { Progress, DEFAULT_SOURCE_ADDRESSES, connectFleet, type RunOptions } from '../harness';
import { parseSourceAddresses } from '../addresses';
import { InspectorClient } from '../inspector';
import { envLines } from '../report';
import { ROOT } from '../paths';
import { startTarget } from '../targets';
import { newJwtSecret } from '../tokens';
import { execFileSync } from 'node:child_process';
import { arg, flag, refuseUnknown } from './args';

refuseUnknown(['steps', 'modes', 'settle-seconds', 'serve-args', 'node-args', 'source-addresses', 'smaps', 'gdb-trim']);
const steps = arg('steps', '5000,19000').split(',').map(Number);
const modes = arg('modes', 'none,jwt').split(',') as ('none' | 'jwt')[];
const settleMs = Number(arg('settle-seconds', '3')) * 1000;
const serveArgs = arg('serve-args', '').split(/\s+/).filter(Boolean);
const nodeArgs = arg('node-args', '').split(/\s+/).filter(Boolean);
/** A directory: /proc/<pid>/smaps of the node at every reading is copied there (<mode>-<sessions>.smaps). */
const smapsDir = arg('smaps', '');
/** After every reading, malloc_trim(0) in the node through gdb, and RSS again (what the allocator holds but could give back). */
const gdbTrim = flag('gdb-trim');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reading {
  sessions: number;
  trimmedRss: number;
  plainRss: number;
  rss: number;
  anon: number;
  heapUsed: number;
  heapTotal: number;
}

async function reading(sessions: number, target: Awaited<ReturnType<typeof startTarget>>, insp: InspectorClient): Promise<Reading> {
  await sleep(settleMs);
  const plainRss = target.rssBytes();
  await insp.gcAll();
  await sleep(500);
  const heaps = await insp.heapUsage();
  const m = target.memory();
  if (smapsDir !== '') fs.writeFileSync(path.join(smapsDir, `${target.name}-${sessions}.smaps`), fs.readFileSync(`/proc/${target.pid}/smaps`));
  let trimmedRss = 0;
  if (gdbTrim) {
    execFileSync('gdb', ['-p', String(target.pid), '-batch', '-ex', 'call (int)malloc_trim(0)'], { stdio: 'ignore' });
    trimmedRss = target.rssBytes();
  }
  return {
    sessions,
    trimmedRss,
    plainRss,
    rss: m.rssBytes,
    anon: m.anonBytes,
    heapUsed: heaps.reduce((s, h) => s + h.usedBytes, 0),
    heapTotal: heaps.reduce((s, h) => s + h.totalBytes, 0),
  };
}

async function measure(mode: 'none' | 'jwt', options: RunOptions, progress: Progress): Promise<Reading[]> {
  const target = await startTarget('c10m', {
    name: `auth-${mode}`,
    workgroups: 1,
    serveArgs,
    execArgv: [...nodeArgs, '--inspect=127.0.0.1:0'],
    jwtSecret: mode === 'jwt' ? newJwtSecret() : null,
  });
  const fleets = [];
  try {
    for (let i = 0; i < 50 && !target.inspectorUrl; i++) await sleep(100);
    if (!target.inspectorUrl) throw new Error('no inspector URL on stderr');
    const insp = await InspectorClient.connect(target.inspectorUrl);
    await insp.attachWorkers(1);
    const out = [await reading(0, target, insp)];
    let first = 0;
    for (const n of steps) {
      const { fleet, allReady } = await connectFleet(
        target,
        { connections: n - first, processes: 1, topicsPerSession: 1, topicCount: 100_000_000, firstSession: first, maxPending: 256 },
        options,
        progress,
        `to ${n}`,
      );
      fleets.push(fleet);
      if (!allReady) throw new Error(`${mode}: only ${fleet.stats().ready} of ${n - first} sessions got ready (${fleet.stats().firstError ?? ''})`);
      first = n;
      out.push(await reading(n, target, insp));
    }
    insp.close();
    return out;
  } finally {
    for (const f of fleets) await f.stop().catch(() => f.kill());
    await target.stop();
  }
}

async function main(): Promise<void> {
  const env = envHeader(ROOT);
  const progress = new Progress(true, 'auth-memory');
  const options = { sourceAddresses: parseSourceAddresses(arg('source-addresses', DEFAULT_SOURCE_ADDRESSES)), engine: 'auto', connectTimeoutSeconds: 120, maxPending: 256 } as unknown as RunOptions;
  const results: { mode: string; readings: Reading[] }[] = [];
  for (const mode of modes) results.push({ mode, readings: await measure(mode, options, progress) });
  progress.stop();
  env.loadAverage.end = Math.round(os.loadavg()[0] * 100) / 100;
  const per = (r: Reading[], k: keyof Reading, a: number, b: number) => Math.round((r[b][k] - r[a][k]) / (r[b].sessions - r[a].sessions));
  const last = steps.length;
  const lines = [
    '## auth-memory',
    '',
    ...envLines(env),
    '',
    `Idle sessions on one workgroup, each on its own topic, connected in steps ${steps.join(', ')}; serve args: ${serveArgs.join(' ') || '–'}; node args: ${nodeArgs.join(' ') || '–'}. B per session.`,
    '',
    '| mode | RSS/session at N (GC) | plain | trimmed, added from empty | added from empty (GC) | plain | anon added (GC) | heap used added | heap committed added | slope RSS (GC) | slope plain | slope heap used |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const { mode, readings: r } of results) {
    const n = r[last].sessions;
    lines.push(
      `| ${mode} | ${Math.round(r[last].rss / n)} | ${Math.round(r[last].plainRss / n)} | ${per(r, 'trimmedRss', 0, last)} | ${per(r, 'rss', 0, last)} | ${per(r, 'plainRss', 0, last)} | ${per(r, 'anon', 0, last)} | ${per(r, 'heapUsed', 0, last)} | ${per(r, 'heapTotal', 0, last)} | ${last > 1 ? per(r, 'rss', 1, last) : '–'} | ${last > 1 ? per(r, 'plainRss', 1, last) : '–'} | ${last > 1 ? per(r, 'heapUsed', 1, last) : '–'} |`,
    );
  }
  lines.push('', 'Readings (bytes):', '', '```', JSON.stringify(results), '```');
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `auth-memory-${env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ benchmark: 'auth-memory', env, params: { steps, modes, settleSeconds: settleMs / 1000, serveArgs, nodeArgs }, results }, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, md);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`auth-memory: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
