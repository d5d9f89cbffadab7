// The layering of docs/ARCHITECTURE.md, checked on the sources: which
// top-level folder may import which, and no import circle anywhere in the
// server, the SDK and what they share. Fails on the import that crosses,
// naming it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../native-io/package-root';

const ROOT = packageRoot();
const FOLDERS = ['server', 'workgroups', 'shm', 'protocol', 'sdk', 'native-io', 'sysctl'];

/** Folders each folder may import from (besides itself and packages). */
const ALLOWED: Record<string, string[]> = {
  server: ['shm', 'protocol', 'native-io', 'sysctl'],
  workgroups: ['shm', 'protocol', 'native-io'],
  shm: ['protocol', 'native-io'],
  protocol: [],
  sdk: ['protocol'],
  'native-io': [],
  sysctl: ['native-io'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** The repository files a source imports (relative specifiers only), resolved to .ts paths. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'|require\('(\.[^']+)'\)|import\('(\.[^']+)'\)/g;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3];
    const base = path.resolve(path.dirname(file), spec);
    const candidates = [base + '.ts', path.join(base, 'index.ts'), base];
    const hit = candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
    if (hit !== undefined) out.push(hit);
  }
  return out;
}

const files = FOLDERS.filter((f) => fs.existsSync(path.join(ROOT, f))).flatMap((f) => sources(path.join(ROOT, f)));
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const folderOf = (file: string) => path.relative(ROOT, file).split(path.sep)[0];
const rel = (file: string) => path.relative(ROOT, file);

test('every source is read (the check is not vacuous)', () => {
  expect(files.length).toBeGreaterThan(50);
  expect([...graph.values()].reduce((n, deps) => n + deps.length, 0)).toBeGreaterThan(100);
});

test('no folder imports one it may not (server/ and workgroups/ never each other; the SDK only protocol/)', () => {
  const crossings: string[] = [];
  for (const [file, deps] of graph) {
    const from = folderOf(file);
    for (const dep of deps) {
      const to = folderOf(dep);
      if (to !== from && !ALLOWED[from].includes(to)) crossings.push(`${rel(file)} -> ${rel(dep)}`);
    }
  }
  expect(crossings).toEqual([]);
});

test('no import circle', () => {
  const circles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 'open') circles.push(stack.slice(stack.indexOf(d)).concat(d).map(rel).join(' -> '));
      else if (state.get(d) === undefined) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (state.get(f) === undefined) visit(f);
  expect(circles).toEqual([]);
});
