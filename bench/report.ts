// Results: one JSON file (everything), a Markdown table and an SVG chart per
// run, under bench/results/<scenario>-<date>.{json,md,svg}. The same command
// prints the same fields every time, so runs compare across commits.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EnvHeader } from './env';
import type { LatencySummary } from './histogram';

export type Figure = number | string | boolean | null;

export interface Column {
  key: string;
  label: string;
  /** Which way is better, for the ratio's reading; 'none' gets no ratio. */
  better: 'higher' | 'lower' | 'none';
}

export interface TargetFigures {
  name: string;
  figures: Record<string, Figure>;
}

export interface Ratio {
  /** The c10m target (c10m, or a variant such as c10m-wg2). */
  subject?: string;
  peer: string;
  key: string;
  /** c10m's figure divided by the peer's. */
  ratio: number | null;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ChartSeries {
  name: string;
  points: [number, number][];
}

export interface ChartPanel {
  title: string;
  xLabel: string;
  yLabel: string;
  log?: boolean;
  series: ChartSeries[];
}

/** A further table of a scenario with several parts (cluster: its saturation steps, its interest cases). */
export interface Table {
  title: string;
  /** The first column's heading (the main table's is "target"). */
  rowLabel: string;
  columns: Column[];
  rows: TargetFigures[];
}

export interface ScenarioResult {
  scenario: string;
  env: EnvHeader;
  params: Record<string, Figure>;
  columns: Column[];
  targets: TargetFigures[];
  ratios: Ratio[];
  latency: LatencySummary | null;
  /** Further tables, after the main one (most scenarios have none). */
  tables?: Table[];
  checks: Check[];
  notes: string[];
  charts: ChartPanel[];
  /** Per-second samples of each target (free-form, for later analysis). */
  series: Record<string, Record<string, Figure>[]>;
}

export function ratios(result: Pick<ScenarioResult, 'columns' | 'targets'>, subject = 'c10m'): Ratio[] {
  const me = result.targets.find((t) => t.name === subject);
  if (!me) return [];
  const out: Ratio[] = [];
  for (const peer of result.targets) {
    if (peer.name === subject) continue;
    for (const c of result.columns) {
      if (c.better === 'none') continue;
      const a = me.figures[c.key];
      const b = peer.figures[c.key];
      out.push({ subject, peer: peer.name, key: c.key, ratio: typeof a === 'number' && typeof b === 'number' && b !== 0 ? Math.round((a / b) * 1000) / 1000 : null });
    }
  }
  return out;
}

function fmt(v: Figure | undefined): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toLocaleString('en-US', { maximumFractionDigits: 3 });
  return String(v);
}

export function envLines(env: EnvHeader): string[] {
  return [
    `- machine: ${env.cpu}, ${env.cores} cores, ${env.memoryGiB} GiB, ${env.kernel} (host ${env.host})`,
    `- node ${env.node}; uWebSockets.js ${env.uwsNative ? 'native' : 'JS fallback'}; native-io ${env.nativeIo.loaded ? env.nativeIo.path : `not loaded (${env.nativeIo.error})`}`,
    `- benchsub engine: ${env.loadgen.native ? `native epoll (${env.loadgen.path})` : `JS fallback (${env.loadgen.error})`}; open files ${env.openFilesLimit}; load average ${env.loadAverage.start} at start, ${env.loadAverage.end ?? '–'} at end; commit ${env.gitCommit ?? 'unknown'}; ${env.date}`,
  ];
}

export function markdown(r: ScenarioResult): string {
  const lines: string[] = [`## ${r.scenario}`, '', ...envLines(r.env), ''];
  lines.push(
    `Parameters: ${Object.entries(r.params)
      .map(([k, v]) => `${k}=${fmt(v)}`)
      .join(', ')}`,
    '',
  );
  lines.push(`| target | ${r.columns.map((c) => c.label).join(' | ')} |`);
  lines.push(`|---|${r.columns.map(() => '---:').join('|')}|`);
  for (const t of r.targets) lines.push(`| ${t.name} | ${r.columns.map((c) => fmt(t.figures[c.key])).join(' | ')} |`);
  const ratioCols = r.columns.filter((c) => c.better !== 'none');
  const peers = [...new Set(r.ratios.map((x) => x.peer))];
  const subjects = [...new Set(r.ratios.map((x) => x.subject ?? 'c10m'))];
  if (peers.length > 0) {
    // Variants (--auth jwt, --admission-rate) are compared with their baseline, another c10m target.
    const variants = peers.some((p) => p.startsWith('c10m'));
    lines.push('', variants ? 'Ratios of each c10m target to each peer and to its baseline (target / other):' : 'c10m as a ratio to each peer (c10m / peer):', '');
    const many = subjects.length > 1;
    lines.push(`| ${many ? 'c10m target | ' : ''}peer | ${ratioCols.map((c) => `${c.label} (${c.better} is better)`).join(' | ')} |`);
    lines.push(`|${many ? '---|' : ''}---|${ratioCols.map(() => '---:').join('|')}|`);
    for (const s of subjects) {
      for (const p of peers) {
        const mine = r.ratios.filter((x) => (x.subject ?? 'c10m') === s && x.peer === p);
        if (mine.length === 0) continue;
        lines.push(`| ${many ? `${s} | ` : ''}${p} | ${ratioCols.map((c) => fmt(mine.find((x) => x.key === c.key)?.ratio ?? null)).join(' | ')} |`);
      }
    }
  }
  for (const t of r.tables ?? []) {
    lines.push('', `${t.title}:`, '');
    lines.push(`| ${t.rowLabel} | ${t.columns.map((c) => c.label).join(' | ')} |`);
    lines.push(`|---|${t.columns.map(() => '---:').join('|')}|`);
    for (const row of t.rows) lines.push(`| ${row.name} | ${t.columns.map((c) => fmt(row.figures[c.key])).join(' | ')} |`);
  }
  if (r.latency && r.latency.count > 0) {
    const l = r.latency;
    lines.push('', 'c10m end-to-end latency over every message (ms):', '');
    lines.push('| messages | mean | stddev | min | p50 | p90 | p95 | p99 | p99.9 | max |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    lines.push(`| ${fmt(l.count)} | ${l.meanMs} | ${l.stdDevMs} | ${l.minMs} | ${l.p50Ms} | ${l.p90Ms} | ${l.p95Ms} | ${l.p99Ms} | ${l.p999Ms} | ${l.maxMs} |`);
  }
  if (r.checks.length > 0) {
    lines.push('', 'Checks:', '');
    for (const c of r.checks) lines.push(`- ${c.ok ? 'ok' : 'FAILED'}: ${c.name} (${c.detail})`);
  }
  if (r.notes.length > 0) {
    lines.push('', 'Notes:', '');
    for (const n of r.notes) lines.push(`- ${n}`);
  }
  return `${lines.join('\n')}\n`;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(min: number, max: number, n: number): number[] {
  if (max <= min) return [min];
  const raw = (max - min) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Math.round(v * 1e9) / 1e9);
  return out;
}

function label(v: number): string {
  if (Math.abs(v) >= 1e6) return `${Math.round(v / 1e5) / 10}M`;
  if (Math.abs(v) >= 1e3) return `${Math.round(v / 100) / 10}k`;
  return String(Math.round(v * 1000) / 1000);
}

/** Line charts, one panel under the other, with a legend per panel. */
export function svg(title: string, panels: ChartPanel[]): string {
  const W = 760;
  const PH = 250;
  const M = { l: 70, r: 150, t: 30, b: 40 };
  const H = 40 + panels.length * (PH + 20);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  panels.forEach((p, pi) => {
    const y0 = 30 + pi * (PH + 20);
    const pw = W - M.l - M.r;
    const ph = PH - M.t - M.b;
    const all = p.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!p.log || y > 0));
    const xs = all.map(([x]) => x);
    const ys = all.map(([, y]) => y);
    const xmin = xs.length ? Math.min(...xs) : 0;
    const xmax = xs.length ? Math.max(...xs, xmin + 1e-9) : 1;
    let ymin = p.log ? (ys.length ? Math.min(...ys) : 1) : 0;
    let ymax = ys.length ? Math.max(...ys) : 1;
    if (p.log) {
      ymin = 10 ** Math.floor(Math.log10(ymin));
      ymax = 10 ** Math.ceil(Math.log10(ymax));
      if (ymax <= ymin) ymax = ymin * 10;
    } else if (ymax <= ymin) ymax = ymin + 1;
    const sx = (x: number) => M.l + ((x - xmin) / (xmax - xmin || 1)) * pw;
    const sy = (y: number) => y0 + M.t + ph - (p.log ? (Math.log10(y) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin)) : (y - ymin) / (ymax - ymin)) * ph;
    out.push(`<text x="${M.l}" y="${y0 + 18}" font-size="12" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${M.l}" y="${y0 + M.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
    const yt = p.log ? Array.from({ length: Math.round(Math.log10(ymax / ymin)) + 1 }, (_, k) => ymin * 10 ** k) : niceTicks(ymin, ymax, 5);
    for (const v of yt) {
      const y = sy(v);
      out.push(`<line x1="${M.l}" x2="${M.l + pw}" y1="${y}" y2="${y}" stroke="#eee"/><text x="${M.l - 6}" y="${y + 4}" text-anchor="end">${label(v)}</text>`);
    }
    for (const v of niceTicks(xmin, xmax, 8)) {
      const x = sx(v);
      out.push(`<line x1="${x}" x2="${x}" y1="${y0 + M.t + ph}" y2="${y0 + M.t + ph + 4}" stroke="#999"/><text x="${x}" y="${y0 + M.t + ph + 16}" text-anchor="middle">${label(v)}</text>`);
    }
    out.push(`<text x="${M.l + pw / 2}" y="${y0 + PH - 6}" text-anchor="middle">${esc(p.xLabel)}</text>`);
    out.push(`<text transform="translate(14 ${y0 + M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(p.yLabel)}${p.log ? ' (log)' : ''}</text>`);
    p.series.forEach((s, si) => {
      const color = COLORS[si % COLORS.length];
      const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!p.log || y > 0)).map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
      if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
      else if (pts.length === 1) out.push(`<circle cx="${pts[0].split(',')[0]}" cy="${pts[0].split(',')[1]}" r="3" fill="${color}"/>`);
      const ly = y0 + M.t + 10 + si * 16;
      out.push(`<line x1="${M.l + pw + 10}" x2="${M.l + pw + 30}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/><text x="${M.l + pw + 34}" y="${ly + 4}">${esc(s.name)}</text>`);
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export interface WrittenFiles {
  json: string;
  markdown: string;
  svg: string;
}

/** Writes <dir>/<scenario>-<date>.{json,md,svg}. */
export function writeResult(r: ScenarioResult, dir: string): WrittenFiles {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = r.env.date.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  const base = path.join(dir, `${r.scenario}-${stamp}`);
  const files = { json: `${base}.json`, markdown: `${base}.md`, svg: `${base}.svg` };
  fs.writeFileSync(files.json, `${JSON.stringify(r, null, 2)}\n`);
  fs.writeFileSync(files.markdown, markdown(r));
  fs.writeFileSync(files.svg, svg(`c10m ${r.scenario} — ${r.env.date.slice(0, 10)}, ${r.env.cores} cores, node ${r.env.node}`, r.charts));
  return files;
}
