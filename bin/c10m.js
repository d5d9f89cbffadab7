#!/usr/bin/env node
'use strict';
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
