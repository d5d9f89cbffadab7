#!/usr/bin/env node
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
// serve: the main thread's young generation kept at its first 1 MB while the server loads (else V8 grows it
// to 32 MB and keeps it), and V8's gc() for collecting once quiet; see shm/heap.ts.
if (process.argv[2] === 'serve') require('node:v8').setFlagsFromString('--semi-space-growth-factor=1 --expose-gc');
// In a checkout (the TypeScript sources are here) dist/ is built when it is
// missing or older than a source, and left alone when current (a few ms).
// An installed package ships dist/ only and is never built here.
if (fs.existsSync(path.join(ROOT, 'server', 'cli.ts')) && fs.existsSync(path.join(ROOT, 'scripts', 'build.js'))) {
  let built;
  try {
    built = require('../scripts/build.js').ensureBuilt();
  } catch (err) {
    // e.g. no typescript (installed without devDependencies): run what dist/ has, if anything.
    process.stderr.write(`c10m: could not build dist/: ${err && err.message ? err.message : err}\n`);
  }
  // A build that failed (its messages are above) must not run the old dist/.
  if (built === false) process.exit(1);
}
let cli;
try {
  cli = require('../dist/server/cli.js');
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes('dist/server/cli.js')) {
    process.stderr.write('c10m: not built yet: run `npm run build` (npm install does it) in the package folder\n');
    process.exit(1);
  }
  throw err;
}
cli.main(process.argv);
