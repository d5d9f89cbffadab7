#!/usr/bin/env node
// Bundles the browser SDK (run by `npm run build` after tsc): sdk/index.ts,
// ESM, minified, with a source map, into dist/sdk-bundle/c10m.js. Node-only
// code stays out: sdk/websocket.ts is swapped for sdk/websocket.browser.ts,
// msgpackr resolves to its browser build, and any node: import fails the build.
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const zlib = require('node:zlib');
const esbuild = require('esbuild');

const ROOT = path.join(__dirname, '..');
const OUT_DIR = path.join(ROOT, 'dist', 'sdk-bundle');
const OUT = path.join(OUT_DIR, 'c10m.js');

/** Swaps ./websocket for ./websocket.browser and refuses Node built-ins and ws. */
const browserOnly = {
  name: 'c10m-browser-only',
  setup(build) {
    build.onResolve({ filter: /^\.\/websocket$/ }, (args) => ({ path: path.join(args.resolveDir, 'websocket.browser.ts') }));
    build.onResolve({ filter: /^(node:.*|ws|fs|path|http|https|net|tls|events|buffer|stream|zlib|crypto|os)$/ }, (args) => ({
      errors: [{ text: `${args.path} is Node-only and must not enter the browser bundle (imported by ${path.relative(ROOT, args.importer)})` }],
    }));
  },
};

async function main() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const result = await esbuild.build({
    entryPoints: [path.join(ROOT, 'sdk', 'index.ts')],
    outfile: OUT,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    sourcemap: 'external',
    sourcesContent: true,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
    plugins: [browserOnly],
  });
  const code = fs.readFileSync(OUT);
  // esbuild leaves no sourceMappingURL comment with 'external'; add the served name.
  if (!code.toString('utf8').includes('sourceMappingURL')) fs.appendFileSync(OUT, '\n//# sourceMappingURL=c10m.js.map\n');
  const final = fs.readFileSync(OUT);
  const gzip = zlib.gzipSync(final, { level: 9 }).length;
  const inputs = Object.keys(result.metafile.inputs);
  const sizes = { file: path.relative(ROOT, OUT), minifiedBytes: final.length, gzippedBytes: gzip, inputs: inputs.length };
  fs.writeFileSync(path.join(OUT_DIR, 'size.json'), JSON.stringify(sizes, null, 2) + '\n');
  if (process.env.C10M_BUILD_QUIET !== '1') console.log(`sdk: ${sizes.file} ${(final.length / 1024).toFixed(1)} KiB minified, ${(gzip / 1024).toFixed(1)} KiB gzipped`);
}

main().catch((err) => {
  console.error(`sdk build failed: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
