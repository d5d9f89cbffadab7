#!/usr/bin/env node
// Builds dist/ (tsc, then the browser SDK bundle) and stamps it.
//   node scripts/build.js             always builds (npm run build)
//   node scripts/build.js --if-stale  builds only when a source is newer than
//                                     the last build or the set of sources
//                                     changed (npm start, npm install, bin/c10m.js)
// A stale check costs a few milliseconds (one stat per source file). The stamp
// holds the time the last successful build *started*, so a file edited during
// a build counts as newer. Builds are serialised by a lock folder, so that
// several `c10m` processes started at once build once.
// Output goes to stderr: `c10m sysctl` and friends print their results on stdout.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const STAMP = path.join(DIST, '.build-stamp.json');
const LOCK = path.join(ROOT, '.build-lock');
/** Folders tsc compiles (tsconfig.json "include") and what else goes into dist/. */
const SOURCE_DIRS = ['server', 'workgroups', 'protocol', 'native-io', 'sdk', 'bench', 'sysctl'];
const SOURCE_FILES = ['tsconfig.json', 'sdk/build.js', 'scripts/build.js'];
/** Outputs that must exist for dist/ to count as built. */
const OUTPUTS = ['dist/server/cli.js', 'dist/sdk/index.js', 'dist/sdk-bundle/c10m.js'];
const LOCK_STALE_MS = 10 * 60_000;

function sources() {
  const out = [];
  const walk = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name === 'node_modules' || e.name === 'build' || e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(p);
    }
  };
  for (const d of SOURCE_DIRS) walk(path.join(ROOT, d));
  for (const f of SOURCE_FILES) if (fs.existsSync(path.join(ROOT, f))) out.push(path.join(ROOT, f));
  return out.map((p) => path.relative(ROOT, p)).sort();
}

/** Why dist/ must be built, or null when it is current. */
function staleReason() {
  let stamp;
  try {
    stamp = JSON.parse(fs.readFileSync(STAMP, 'utf8'));
  } catch {
    return 'dist/ was not built by scripts/build.js yet';
  }
  for (const o of OUTPUTS) if (!fs.existsSync(path.join(ROOT, o))) return `${o} is missing`;
  const files = sources();
  if (files.join('\n') !== (stamp.files || []).join('\n')) return 'source files were added or removed';
  for (const f of files) {
    if (fs.statSync(path.join(ROOT, f)).mtimeMs >= stamp.startedAtMs) return `${f} changed`;
  }
  return null;
}

function run(args) {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 2, 2] });
  return r.status === 0;
}

function build() {
  const startedAtMs = Date.now();
  const files = sources();
  // The stamp goes first, so that a build that fails leaves dist/ stale.
  fs.rmSync(STAMP, { force: true });
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  if (!run([tsc, '-p', 'tsconfig.json']) || !run([path.join('sdk', 'build.js')])) return false;
  fs.mkdirSync(DIST, { recursive: true });
  fs.writeFileSync(STAMP, JSON.stringify({ startedAtMs, files }) + '\n');
  return true;
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Runs fn holding the lock folder; waits for another builder first. */
function withLock(fn) {
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      try {
        if (Date.now() - fs.statSync(LOCK).mtimeMs > LOCK_STALE_MS) fs.rmSync(LOCK, { recursive: true, force: true });
      } catch {
        // Gone meanwhile: another build just finished; try again.
      }
      sleep(200);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
}

/** Builds when stale (or always with force). Returns true when dist/ is current afterwards. */
function ensureBuilt({ force = false, quiet = false } = {}) {
  if (!force && staleReason() === null) return true;
  return withLock(() => {
    // Another process may have built it while this one waited for the lock.
    const why = force ? null : staleReason();
    if (!force && why === null) return true;
    const t0 = Date.now();
    if (!quiet && why) process.stderr.write(`c10m: building dist/ (${why}) ...\n`);
    const ok = build();
    if (!quiet) process.stderr.write(ok ? `c10m: built dist/ in ${((Date.now() - t0) / 1000).toFixed(1)} s\n` : 'c10m: the build failed (messages above)\n');
    return ok;
  });
}

module.exports = { ensureBuilt, staleReason, sources };

if (require.main === module) {
  const ifStale = process.argv.includes('--if-stale');
  process.exit(ensureBuilt({ force: !ifStale, quiet: !ifStale && process.env.C10M_BUILD_QUIET === '1' }) ? 0 : 1);
}
