#!/usr/bin/env node
// Builds benchsub's epoll client (c10m_loadgen.node) at `npm install`, after
// native-io/build.js, with the same rules: never fails the install (benchsub
// then runs its slow JS fallback on `ws` and says so), C10M_SKIP_NATIVE_BUILD=1
// skips it, C10M_ASAN=1 builds with AddressSanitizer.
'use strict';
const { buildAddon } = require('../../native-io/build.js');

buildAddon(__dirname, 'bench/loadgen', 'benchsub will use its JS fallback (a few hundred connections at most)');
process.exit(0);
