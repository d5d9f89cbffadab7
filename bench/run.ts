// `c10m bench run <scenario>`: starts the server (or targets --url) and the
// peers, runs the scenario on each, and writes the results.
import * as os from 'node:os';
import * as path from 'node:path';
import { envHeader } from './env';
import { Progress, type RunOptions } from './harness';
import { ratios, writeResult, type ScenarioResult, type WrittenFiles } from './report';
import { connectStorm } from './scenarios/connect-storm';
import { fanout } from './scenarios/fanout';
import { idleMemory } from './scenarios/idle-memory';
import { referenceScaled } from './scenarios/reference-scaled';
import { externalTarget, startTarget, type Target, type TargetKind } from './targets';
import { ROOT } from './paths';

export const SCENARIOS = ['reference-scaled', 'fanout', 'connect-storm', 'idle-memory'] as const;
export type Scenario = (typeof SCENARIOS)[number];

type PartialResult = Omit<ScenarioResult, 'env' | 'scenario'>;
type RunOne = (target: Target, o: RunOptions, progress: Progress) => Promise<PartialResult>;

const RUNNERS: Record<Scenario, RunOne> = {
  'reference-scaled': referenceScaled,
  fanout,
  'connect-storm': connectStorm,
  'idle-memory': idleMemory,
};

/** Scenarios that run the peers too (reference-scaled measures c10m alone). */
const WITH_PEERS: Scenario[] = ['fanout', 'connect-storm', 'idle-memory'];

export const DEFAULT_RESULTS_DIR = path.join(ROOT, 'bench', 'results');

async function runOn(kind: TargetKind, scenario: Scenario, o: RunOptions, progress: Progress): Promise<PartialResult> {
  const target = o.url && kind === 'c10m' ? externalTarget(o.url, o.serverPid) : await startTarget(kind, { workgroups: o.workgroups, serveArgs: ['--benchmark-mode'] });
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
function merge(scenario: Scenario, parts: PartialResult[]): ScenarioResult {
  const [first, ...rest] = parts;
  const result: ScenarioResult = {
    scenario,
    env: envHeader(ROOT),
    params: first.params,
    columns: first.columns,
    targets: parts.flatMap((p) => p.targets),
    ratios: [],
    latency: first.latency,
    checks: parts.flatMap((p) => p.checks),
    notes: [...first.notes, ...rest.flatMap((p) => p.notes)],
    charts: first.charts.map((panel, i) => ({ ...panel, series: parts.flatMap((p) => (p.charts[i]?.series ?? []).map((s) => ({ ...s, name: p.charts[i].series.length > 1 && parts.length > 1 ? `${p.targets[0].name} ${s.name}` : parts.length > 1 ? p.targets[0].name : s.name }))) })),
    series: Object.assign({}, ...parts.map((p) => p.series)),
  };
  result.ratios = ratios(result);
  return result;
}

export async function runScenario(scenario: Scenario, o: RunOptions): Promise<{ result: ScenarioResult; files: WrittenFiles }> {
  const loadAtStart = Math.round(os.loadavg()[0] * 100) / 100;
  const progress = new Progress(o.progress, scenario);
  const kinds: TargetKind[] = ['c10m', ...(WITH_PEERS.includes(scenario) ? o.peers : [])];
  const parts: PartialResult[] = [];
  try {
    for (const kind of kinds) parts.push(await runOn(kind, scenario, o, progress));
  } finally {
    progress.stop();
  }
  const result = merge(scenario, parts);
  result.env.loadAverage = { start: loadAtStart, end: Math.round(os.loadavg()[0] * 100) / 100 };
  const files = writeResult(result, o.resultsDir);
  return { result, files };
}
