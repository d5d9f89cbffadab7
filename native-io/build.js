#!/usr/bin/env node
// Builds the native-io addon at `npm install`. A failed build is not fatal:
// every native-io function has a pure-JS fallback, and the server reports
// which path it took. Set C10M_SKIP_NATIVE_BUILD=1 to skip the build, and
// C10M_ASAN=1 to build with AddressSanitizer (see native-io/README.md).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const dir = __dirname;
if (process.env.C10M_SKIP_NATIVE_BUILD === '1') {
  console.log('native-io: build skipped (C10M_SKIP_NATIVE_BUILD=1); the JS fallbacks will be used');
  process.exit(0);
}
if (!fs.existsSync(path.join(dir, 'binding.gyp'))) {
  console.log('native-io: no binding.gyp yet; the JS fallbacks will be used');
  process.exit(0);
}
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  console.warn('native-io: node-gyp is not installed; the JS fallbacks will be used');
  process.exit(0);
}
// Skip a build that would produce what is there: every addon newer than
// binding.gyp and every source, built for this Node (npm install and the
// first `npx c10m` in a checkout both run this script). C10M_ASAN=1 and
// C10M_FORCE_NATIVE_BUILD=1 always build.
const STAMP = path.join(dir, 'build', 'Release', '.c10m-build.json');
function current() {
  if (process.env.C10M_ASAN === '1' || process.env.C10M_FORCE_NATIVE_BUILD === '1') return false;
  try {
    const stamp = JSON.parse(fs.readFileSync(STAMP, 'utf8'));
    if (stamp.node !== process.versions.modules || stamp.asan) return false;
    const built = Math.min(...['c10m_native.node', 'c10m_loadgen.node'].map((f) => fs.statSync(path.join(dir, 'build', 'Release', f)).mtimeMs));
    const inputs = ['binding.gyp', ...fs.readdirSync(path.join(dir, 'src')).map((f) => path.join('src', f))];
    return inputs.every((f) => fs.statSync(path.join(dir, f)).mtimeMs < built);
  } catch {
    return false;
  }
}
if (current()) {
  console.log('native-io: addon is up to date (native-io/build/Release); not rebuilt');
  process.exit(0);
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
  console.warn(`native-io: the addon did not build (exit ${r.status}, ${seconds} s); the server will run on the JS fallbacks and say so at start`);
} else {
  const asan = process.env.C10M_ASAN === '1' ? ' with AddressSanitizer' : '';
  const built = fs.readdirSync(path.join(dir, 'build', 'Release')).filter((f) => f.endsWith('.node'));
  fs.writeFileSync(STAMP, JSON.stringify({ node: process.versions.modules, asan: process.env.C10M_ASAN === '1' }) + '\n');
  console.log(`native-io: built ${built.map((f) => `native-io/build/Release/${f}`).join(', ')}${asan} in ${seconds} s`);
}
process.exit(0);
