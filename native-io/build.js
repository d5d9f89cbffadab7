#!/usr/bin/env node
// Builds the native-io addon at `npm install` (bench/loadgen/build.js builds
// benchsub's addon the same way, with buildAddon below). A failed build is
// not fatal: every native-io function has a pure-JS fallback, and the server
// reports which path it took. Set C10M_SKIP_NATIVE_BUILD=1 to skip the
// build, and C10M_ASAN=1 to build with AddressSanitizer (see
// native-io/README.md).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

/** Beside the addons: the Node ABI and flags they were built for (see current()). */
const STAMP = '.c10m-build.json';

/**
 * True when a build of `dir` would produce what is there: every addon newer
 * than binding.gyp and every source, built for this Node (npm install and
 * the first `npx c10m` in a checkout both run this). C10M_ASAN=1 and
 * C10M_FORCE_NATIVE_BUILD=1 always build.
 */
function current(dir) {
  if (process.env.C10M_ASAN === '1' || process.env.C10M_FORCE_NATIVE_BUILD === '1') return false;
  try {
    const release = path.join(dir, 'build', 'Release');
    const stamp = JSON.parse(fs.readFileSync(path.join(release, STAMP), 'utf8'));
    if (stamp.node !== process.versions.modules || stamp.asan || !Array.isArray(stamp.addons) || stamp.addons.length === 0) return false;
    const built = Math.min(...stamp.addons.map((f) => fs.statSync(path.join(release, f)).mtimeMs));
    const inputs = ['binding.gyp', ...fs.readdirSync(path.join(dir, 'src')).map((f) => path.join('src', f))];
    return inputs.every((f) => fs.statSync(path.join(dir, f)).mtimeMs < built);
  } catch {
    return false;
  }
}

/**
 * Runs node-gyp in `dir` (a folder holding binding.gyp). `label` names the
 * addon in the messages; `fallback` says what runs when it does not build.
 * Never throws and never fails the install.
 */
function buildAddon(dir, label, fallback) {
  const rel = path.relative(path.join(__dirname, '..'), dir) || '.';
  if (process.env.C10M_SKIP_NATIVE_BUILD === '1') {
    console.log(`${label}: build skipped (C10M_SKIP_NATIVE_BUILD=1); ${fallback}`);
    return false;
  }
  if (!fs.existsSync(path.join(dir, 'binding.gyp'))) {
    console.log(`${label}: no ${rel}/binding.gyp; ${fallback}`);
    return false;
  }
  if (current(dir)) {
    console.log(`${label}: addon is up to date (${rel}/build/Release); not rebuilt`);
    return true;
  }
  let gyp;
  try {
    gyp = require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    console.warn(`${label}: node-gyp is not installed; ${fallback}`);
    return false;
  }
  // --jobs=max: one compiler per core, one source file per function family.
  const args = [gyp, 'rebuild', '--jobs=max'];
  // node-gyp downloads Node's headers unless told where they are. npm passes
  // its `nodedir` setting as npm_config_nodedir; run by hand (node
  // native-io/build.js) there is no npm, so point at the headers installed
  // beside this node binary when they exist, instead of a download that fails
  // on a machine without internet access.
  if (!process.env.npm_config_nodedir) {
    const prefix = path.resolve(path.dirname(process.execPath), '..');
    if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  }
  const started = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: dir, stdio: 'inherit' });
  const seconds = (Number(process.hrtime.bigint() - started) / 1e9).toFixed(1);
  if (r.status !== 0) {
    console.warn(`${label}: the addon did not build (exit ${r.status}, ${seconds} s); ${fallback}`);
    return false;
  }
  const asan = process.env.C10M_ASAN === '1' ? ' with AddressSanitizer' : '';
  const built = fs.readdirSync(path.join(dir, 'build', 'Release')).filter((f) => f.endsWith('.node'));
  fs.writeFileSync(path.join(dir, 'build', 'Release', STAMP), JSON.stringify({ node: process.versions.modules, asan: process.env.C10M_ASAN === '1', addons: built }) + '\n');
  console.log(`${label}: built ${built.map((f) => `${rel}/build/Release/${f}`).join(', ')}${asan} in ${seconds} s`);
  return true;
}

module.exports = { buildAddon };

if (require.main === module) {
  buildAddon(__dirname, 'native-io', 'the server will run on the JS fallbacks and say so at start');
  process.exit(0);
}
