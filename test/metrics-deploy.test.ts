// deploy/prometheus and deploy/grafana ask only for metrics that a real
// server exports: every metric name in the Grafana dashboard's queries and
// in the Prometheus rules is a family of a live /metrics scrape.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ROOT, startServer, type TestServer } from './helpers/server';

const PROMETHEUS = path.join(ROOT, 'deploy', 'prometheus');
const GRAFANA = path.join(ROOT, 'deploy', 'grafana');

/** Metric names in a PromQL expression, without recording-rule names (level:metric:operation). */
function metricNames(expr: string): string[] {
  const withoutRecorded = expr.replace(/\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b/g, ' ');
  return [...withoutRecorded.matchAll(/\b((?:c10m|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]);
}

/** Family and sample names of an exposition: families are listed (# TYPE) even before a workgroup reports a value. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) names.add(type[1]);
    else if (line && !line.startsWith('#')) names.add(line.split(/[{ ]/, 1)[0]);
  }
  return names;
}

let server: TestServer;
let exported: Set<string>;

beforeAll(async () => {
  server = await startServer(['--workgroups', '1']);
  const res = await fetch(server.adminUrl('/metrics'));
  expect(res.status).toBe(200);
  exported = exportedNames(await res.text());
});
afterAll(async () => {
  await server.stop();
});

test('the Grafana dashboard queries only exported metrics, on the chosen nodes, through its data-source variable', () => {
  const dashboard = JSON.parse(readFileSync(path.join(GRAFANA, 'c10m-dashboard.json'), 'utf8'));
  const variables = dashboard.templating.list.map((v: { name: string }) => v.name);
  expect(variables).toEqual(['datasource', 'instance']);
  const targets = dashboard.panels.flatMap((p: { targets?: { expr: string; datasource: { uid: string } }[] }) => p.targets ?? []);
  expect(targets.length).toBeGreaterThan(30);
  const used = new Set<string>();
  for (const t of targets) {
    expect(t.datasource.uid).toBe('${datasource}');
    const names = metricNames(t.expr);
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) used.add(n);
    // every selector is limited to the chosen nodes
    expect(t.expr).toContain('instance=~"$instance"');
  }
  const missing = [...used].filter((n) => !exported.has(n));
  expect(missing).toEqual([]);
  // and it shows the figures the issue names
  for (const n of [
    'c10m_sessions',
    'c10m_messages_in_total',
    'c10m_messages_out_total',
    'c10m_publish_to_write_latency_seconds_bucket',
    'c10m_slow_consumer_closes_total',
    'c10m_workgroup_restarts_total',
    'c10m_arena_bytes',
    'c10m_open_descriptors',
    'c10m_cache_messages',
    'c10m_ring_records_out_total',
  ]) {
    expect(used).toContain(n);
  }
  // panels do not overlap on Grafana's 24-column grid
  const cells = new Set<string>();
  for (const p of dashboard.panels as { gridPos: { x: number; y: number; w: number; h: number } }[]) {
    const g = p.gridPos;
    expect(g.x + g.w).toBeLessThanOrEqual(24);
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        expect(cells.has(`${x},${y}`)).toBe(false);
        cells.add(`${x},${y}`);
      }
    }
  }
});

test('the Prometheus config scrapes /metrics and loads rules that use only exported metrics', () => {
  const config = YAML.parse(readFileSync(path.join(PROMETHEUS, 'prometheus.yml'), 'utf8'));
  const job = config.scrape_configs.find((j: { job_name: string }) => j.job_name === 'c10m');
  expect(job.metrics_path).toBe('/metrics');
  expect(job.static_configs[0].targets.length).toBeGreaterThan(0);
  expect(config.rule_files).toEqual(['c10m-rules.yml']);
  const rules = YAML.parse(readFileSync(path.join(PROMETHEUS, 'c10m-rules.yml'), 'utf8'));
  const all = rules.groups.flatMap((g: { rules: { expr: string; record?: string; alert?: string }[] }) => g.rules);
  const recorded = new Set(all.filter((r: { record?: string }) => r.record).map((r: { record: string }) => r.record));
  expect(all.filter((r: { alert?: string }) => r.alert).length).toBeGreaterThan(5);
  for (const r of all as { expr: string }[]) {
    for (const n of metricNames(r.expr)) expect(exported).toContain(n);
    // recording rules used by alerts are defined in the same file
    for (const m of r.expr.matchAll(/\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b/g)) expect(recorded).toContain(m[1]);
  }
});
