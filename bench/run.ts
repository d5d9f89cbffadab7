// `c10m bench run <scenario>`: starts the server (or targets --url) and the
// peers, runs the scenario on each, and writes the results.
import * as os from 'node:os';
import * as path from 'node:path';
import { envHeader } from './env';
import { Progress, type RunOptions } from './harness';
import { ratios, writeResult, type ScenarioResult, type WrittenFiles } from './report';
import { cluster } from './scenarios/cluster';
import { connectStorm } from './scenarios/connect-storm';
import { fanout } from './scenarios/fanout';
import { fanoutBurst } from './scenarios/fanout-burst';
import { idleMemory } from './scenarios/idle-memory';
import { million } from './scenarios/million';
import { reconnectStorm, DEFAULTS as RECONNECT_STORM } from './scenarios/reconnect-storm';
import { referenceScaled } from './scenarios/reference-scaled';
import { externalTarget, startTarget, type Target, type TargetKind } from './targets';
import { ROOT } from './paths';
import { freePort } from '../server/ports';

export const SCENARIOS = ['reference-scaled', 'fanout', 'connect-storm', 'idle-memory', 'cluster', 'reconnect-storm', 'million'] as const;
export type Scenario = (typeof SCENARIOS)[number];

type PartialResult = Omit<ScenarioResult, 'env' | 'scenario'>;
type RunOne = (target: Target, o: RunOptions, progress: Progress) => Promise<PartialResult>;

/** The scenarios run once per target; cluster and million start their own nodes and Redis (bench/scenarios/cluster.ts, million.ts). */
type OwnServers = 'cluster' | 'million';
const RUNNERS: Record<Exclude<Scenario, OwnServers>, RunOne> = {
  'reference-scaled': referenceScaled,
  fanout: (t, o, p) => (o.burst ? fanoutBurst(t, o, p) : fanout(t, o, p)),
  'connect-storm': connectStorm,
  'idle-memory': idleMemory,
  'reconnect-storm': reconnectStorm,
};

/** Scenarios that run the peers too (reference-scaled only with an explicit --peers: bench/cli.ts). */
const WITH_PEERS: Scenario[] = ['reference-scaled', 'fanout', 'connect-storm', 'idle-memory'];
// reconnect-storm runs c10m only: the peers have no admission to compare.

export const DEFAULT_RESULTS_DIR = path.join(ROOT, 'bench', 'results');

/** One server to run a scenario on: a c10m variant (workgroups, cache) or a peer. */
export interface RunTarget {
  kind: TargetKind;
  name: string;
  workgroups: number;
  serveArgs: string[];
  /** c10m: --auth jwt (with the run's secret). */
  auth?: 'none' | 'jwt';
  /** c10m: --admission-rate (0: off). */
  admissionRate?: number;
  /** The variant this one is compared with (same c10m but --auth none and --admission-rate 0), when the run has it. */
  baseline?: string;
}

/**
 * c10m once per --workgroups count, --cache-messages value, --auth mode and
 * --admission-rate (named c10m-wg2, c10m-cache0, c10m-auth-jwt,
 * c10m-admission2000 / c10m-admission-off, together c10m-wg2-cache0-... when
 * a list has more than one entry; plain c10m otherwise), then each peer. A
 * jwt or admission variant names as its baseline the same c10m with --auth
 * none and --admission-rate 0, when the run has it.
 */
export function runTargets(scenario: Scenario, o: RunOptions): RunTarget[] {
  const out: RunTarget[] = [];
  const caches: (number | null)[] = o.cacheMessagesList ?? [null];
  const auths = o.authList ?? ['none'];
  const admissions: (number | null)[] = o.admissionRates ?? (scenario === 'reconnect-storm' ? RECONNECT_STORM.admissionRates : [null]);
  for (const wg of o.workgroupsList) {
    for (const cache of caches) {
      let stem = 'c10m';
      if (o.workgroupsList.length > 1) stem += `-wg${wg}`;
      if (caches.length > 1) stem += `-cache${cache}`;
      const variants: RunTarget[] = [];
      for (const auth of auths) {
        for (const admission of admissions) {
          let name = stem;
          if (auths.length > 1) name += `-auth-${auth}`;
          if (admissions.length > 1) name += admission ? `-admission${admission}` : '-admission-off';
          const serveArgs = [
            '--benchmark-mode',
            ...(cache === null ? [] : ['--cache-messages', String(cache)]),
            ...(admission === null ? [] : ['--admission-rate', String(admission)]),
            ...o.serveArgs,
          ];
          variants.push({ kind: 'c10m', name, workgroups: wg, serveArgs, auth, admissionRate: admission ?? 0 });
        }
      }
      const base = variants.find((v) => v.auth === 'none' && v.admissionRate === 0);
      for (const v of variants) if (base !== undefined && v !== base) v.baseline = base.name;
      out.push(...variants);
    }
  }
  // Each target of another workgroup count against the same variant at the first count (wg2 / wg1).
  const firstWg = out.filter((t) => t.workgroups === o.workgroupsList[0]);
  for (const t of out) {
    if (t.workgroups === o.workgroupsList[0] || t.baseline !== undefined) continue;
    const same = firstWg.find((f) => f.name === t.name.replace(`-wg${t.workgroups}`, `-wg${o.workgroupsList[0]}`));
    if (same) t.baseline = same.name;
  }
  if (WITH_PEERS.includes(scenario)) for (const p of o.peers) out.push({ kind: p, name: p, workgroups: 1, serveArgs: [] });
  return out;
}

async function runOn(t: RunTarget, scenario: Exclude<Scenario, OwnServers>, options: RunOptions, progress: Progress): Promise<PartialResult> {
  const kind = t.kind;
  const o: RunOptions = { ...options, workgroups: t.workgroups, admissionRate: t.admissionRate ?? 0 };
  // --gc-readings: the inspector, through which every isolate is made to collect its garbage before a memory reading.
  // idle-memory: every server can switch its inspector on later (SIGUSR1), for the forced-GC reading after the plain ones.
  const execArgv =
    o.gcReadings && kind === 'c10m' ? [...o.serverNodeArgs, '--inspect=127.0.0.1:0'] : scenario === 'idle-memory' ? [...o.serverNodeArgs, '--inspect-port=127.0.0.1:0'] : o.serverNodeArgs;
  const target =
    o.url && kind === 'c10m'
      ? externalTarget(o.url, o.serverPid)
      : await startTarget(kind, {
          name: t.name,
          workgroups: t.workgroups,
          serveArgs: t.serveArgs,
          execArgv,
          jwtSecret: t.auth === 'jwt' ? o.jwtSecret : null,
          // reconnect-storm restarts the node on its port: a port given (not 0) is listened on with SO_REUSEADDR and
          // SO_REUSEPORT, so that the killed node's sessions, in TIME_WAIT for a minute, do not keep the new one out.
          port: scenario === 'reconnect-storm' ? await freePort('127.0.0.1') : 0,
        });
  try {
    return await RUNNERS[scenario](target, o, progress);
  } catch (err) {
    const tail = target.output.slice(-3).join(' ').slice(0, 500);
    throw new Error(`${scenario} on ${kind}: ${(err as Error).message}${tail ? ` (server output: ${tail})` : ''}`);
  } finally {
    await target.stop();
  }
}

/** Merges the per-target parts into one result (c10m first, then the peers in order). */
function merge(scenario: Scenario, parts: PartialResult[], runTargets: RunTarget[]): ScenarioResult {
  const [first, ...rest] = parts;
  const result: ScenarioResult = {
    scenario,
    env: envHeader(ROOT),
    params: { ...first.params, ...(typeof first.params.workgroups === 'number' ? { workgroups: [...new Set(parts.map((p) => p.params.workgroups))].join(',') } : {}) },
    columns: first.columns,
    targets: parts.flatMap((p) => p.targets),
    ratios: [],
    latency: first.latency,
    ...(parts.some((p) => p.tables) ? { tables: parts.flatMap((p) => p.tables ?? []) } : {}),
    checks: parts.flatMap((p) => p.checks),
    notes: [...first.notes, ...rest.flatMap((p) => p.notes)],
    charts: first.charts.map((panel, i) => ({
      ...panel,
      series: parts.flatMap((p) =>
        (p.charts[i]?.series ?? []).map((s) => ({ ...s, name: p.charts[i].series.length > 1 && parts.length > 1 ? `${p.targets[0].name} ${s.name}` : parts.length > 1 ? p.targets[0].name : s.name })),
      ),
    })),
    series: Object.assign({}, ...parts.map((p) => p.series)),
  };
  // Every c10m variant against every peer (never against each other: those are in the table).
  result.ratios = result.targets
    .filter((t) => t.name.startsWith('c10m'))
    .flatMap((t) => ratios({ columns: result.columns, targets: result.targets.filter((x) => x === t || !x.name.startsWith('c10m')) }, t.name));
  // Each --auth jwt / --admission-rate variant against its baseline (the same c10m without them).
  for (const rt of runTargets) {
    const t = result.targets.find((x) => x.name === rt.name);
    const base = result.targets.find((x) => x.name === rt.baseline);
    if (t && base) result.ratios.push(...ratios({ columns: result.columns, targets: [t, base] }, t.name));
  }
  return result;
}

export async function runScenario(scenario: Scenario, o: RunOptions): Promise<{ result: ScenarioResult; files: WrittenFiles }> {
  const loadAtStart = Math.round(os.loadavg()[0] * 100) / 100;
  const progress = new Progress(o.progress, scenario);
  const parts: PartialResult[] = [];
  const targets = scenario === 'cluster' || scenario === 'million' ? [] : runTargets(scenario, o);
  try {
    if (scenario === 'cluster') parts.push(await cluster(o, progress));
    else if (scenario === 'million') parts.push(await million(o, progress));
    else for (const t of targets) parts.push(await runOn(t, scenario, o, progress));
  } finally {
    progress.stop();
  }
  const result = merge(scenario, parts, targets);
  result.env.loadAverage = { start: loadAtStart, end: Math.round(os.loadavg()[0] * 100) / 100 };
  const files = writeResult(result, o.resultsDir);
  return { result, files };
}
