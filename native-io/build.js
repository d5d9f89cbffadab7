#!/usr/bin/env node
// Builds the native-io addon at `npm install`. A failed build is not fatal:
// every native-io function has a pure-JS fallback, and the server reports
// which path it took. Set C10M_SKIP_NATIVE_BUILD=1 to skip the build.
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
const r = spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: dir, stdio: 'inherit' });
if (r.status !== 0) {
  console.warn(`native-io: the addon did not build (exit ${r.status}); the server will run on the JS fallbacks and say so at start`);
}
process.exit(0);
