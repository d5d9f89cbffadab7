// The repository as a product: what `npm pack` ships (the built code, the
// native sources node-gyp needs at `npm install`, the files the server reads
// at run time, the docs a user is pointed to) and nothing else (no tests, no
// benchmark results, no TypeScript sources, no lab scripts); and the
// Markdown in the repository links only to files that exist in a clone.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../native-io/package-root';

const ROOT = packageRoot();

interface PackEntry {
  path: string;
  size: number;
}

let shipped: string[] = [];
let pack: { entryCount: number; size: number; unpackedSize: number; files: PackEntry[] };

beforeAll(() => {
  // --ignore-scripts: no `prepare` (npm run build) here; pretest built dist/ already.
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
  pack = (JSON.parse(r.stdout) as (typeof pack)[])[0];
  shipped = pack.files.map((f) => f.path).sort();
}, 90_000);

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  scripts: Record<string, string>;
};

/** The sources a binding.gyp compiles, relative to the repository root. */
function gypSources(gypFile: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, gypFile), 'utf8').replace(/#.*$/gm, '');
  const dir = path.dirname(gypFile);
  return [...text.matchAll(/"(src\/[\w.-]+\.(?:cc|c|h))"/g)].map((m) => path.posix.join(dir, m[1]));
}

/** Headers a C++ file includes with quotes, resolved against its folder and the gyp file's include_dirs. */
function quotedIncludes(file: string, includeDirs: string[]): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return [...text.matchAll(/^#include "([^"]+)"/gm)].map((m) => {
    for (const dir of [path.posix.dirname(file), ...includeDirs]) {
      const candidate = path.posix.join(dir, m[1]);
      if (fs.existsSync(path.join(ROOT, candidate))) return candidate;
    }
    throw new Error(`${file} includes "${m[1]}", found nowhere`);
  });
}

describe('npm pack', () => {
  test('ships no tests, benchmark results, lab scripts, CI files or TypeScript sources', () => {
    const forbiddenFolders = ['test/', 'dist-lab/', 'bench/results/', 'bench/lab/', 'dist/bench/lab/', '.ci/', 'scripts/', 'deploy/', 'native-io/build/', 'bench/loadgen/build/'];
    const forbidden = shipped.filter(
      (f) => forbiddenFolders.some((folder) => f.startsWith(folder)) || (f.endsWith('.ts') && !f.endsWith('.d.ts')) || /(^|\/)tsconfig[^/]*\.json$|jest[^/]*\.config\.js$/.test(f),
    );
    expect(forbidden).toEqual([]);
  });

  test('ships what the entry points, the bin and the exports name', () => {
    const named = [pkg.main, pkg.types, ...Object.values(pkg.bin)];
    for (const target of Object.values(pkg.exports)) {
      if (typeof target === 'string') named.push(target);
      else named.push(...Object.values(target));
    }
    const files = named.map((f) => f.replace(/^\.\//, '')).filter((f) => f !== 'package.json');
    expect(files.filter((f) => !shipped.includes(f))).toEqual([]);
    // The worker entry the supervisor starts, and benchsub's.
    expect(shipped).toEqual(expect.arrayContaining(['dist/workgroups/worker.js', 'dist/bench/sub-worker.js', 'dist/bench/loadgen/index.js']));
  });

  test('ships every file the install script runs and node-gyp compiles, for both addons', () => {
    const scripts = [...pkg.scripts.install.matchAll(/node\s+(\S+\.js)/g)].map((m) => m[1]);
    expect(scripts).toEqual(['native-io/build.js', 'bench/loadgen/build.js']);
    const needed = new Set<string>(scripts);
    for (const gyp of ['native-io/binding.gyp', 'bench/loadgen/binding.gyp']) {
      needed.add(gyp);
      const includeDirs = gyp.startsWith('bench/') ? ['native-io/src'] : [];
      const sources = gypSources(gyp);
      expect({ gyp, sources: sources.length > 0 }).toEqual({ gyp, sources: true });
      for (const src of sources) {
        needed.add(src);
        for (const header of quotedIncludes(src, includeDirs)) needed.add(header);
      }
    }
    expect([...needed].filter((f) => !shipped.includes(f))).toEqual([]);
    expect(shipped).toEqual(expect.arrayContaining(['bench/loadgen/src/loadgen.h', 'native-io/src/errors.h']));
  });

  test('ships what the server reads at run time and the documents a user is pointed to', () => {
    expect(shipped).toEqual(
      expect.arrayContaining(['dist/sdk-bundle/c10m.js', 'sdk/demo/index.html', 'server/dashboard/index.html', 'sysctl/apply.sh', 'README.md', 'LICENSE', 'protocol/PROTOCOL.md', 'sdk/README.md']),
    );
  });
});

describe('repository documents', () => {
  const markdown = spawnSync('git', ['ls-files', '-co', '--exclude-standard', '*.md'], { cwd: ROOT, encoding: 'utf8' })
    .stdout.split('\n')
    .filter((f) => f !== '' && !f.startsWith('node_modules/') && fs.existsSync(path.join(ROOT, f)));

  test('every relative Markdown link resolves inside the clone', () => {
    expect(markdown.length).toBeGreaterThan(5);
    const broken: string[] = [];
    for (const file of markdown) {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1].split('#')[0];
        if (target === '' || /^[a-z]+:/i.test(target)) continue;
        const full = path.resolve(ROOT, path.dirname(file), target);
        if (!full.startsWith(ROOT + path.sep) || !fs.existsSync(full)) broken.push(`${file} -> ${m[1]}`);
      }
    }
    expect(broken).toEqual([]);
  });

  test('nothing points at the design notes outside the repository', () => {
    const r = spawnSync('git', ['grep', '-n', '-I', '-E', 'DESIGN\\.md|\\.\\./shared/', '--', '.', ':!test/package.test.ts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stdout).toBe('');
  });
});
