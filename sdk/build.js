#!/usr/bin/env node
// Bundles the browser SDK (run by `npm run build` after tsc). Filled in by the SDK work.
'use strict';
