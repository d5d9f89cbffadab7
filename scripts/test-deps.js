#!/usr/bin/env node
// Run before `npm test`: the browser tests drive Debian's chromium
// (/usr/bin/chromium) with playwright-core, which never downloads a browser.
// On a fresh Debian machine where we are root, install it; elsewhere say
// plainly what to install. Never fails the test run itself: the browser
// tests then fail with the same message.
'use strict';
const fs = require('node:fs');
const { spawnSync } = require('node:child_process');

const CHROMIUM = '/usr/bin/chromium';
if (fs.existsSync(CHROMIUM) || process.env.C10M_SKIP_TEST_DEPS === '1') process.exit(0);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
if (!isRoot || !hasApt) {
  console.warn(`test-deps: ${CHROMIUM} is missing; the browser tests need it. Install Debian's chromium (apt-get install chromium) and run again.`);
  process.exit(0);
}
console.log('test-deps: installing Debian chromium for the browser tests (apt-get install chromium) ...');
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
const install = update.status === 0 ? spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: ['ignore', 'ignore', 'inherit'], env }) : update;
if (install.status !== 0 || !fs.existsSync(CHROMIUM)) console.warn('test-deps: could not install chromium; the browser tests will fail.');
else console.log('test-deps: chromium installed.');
