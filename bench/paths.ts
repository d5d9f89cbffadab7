// Where the compiled bench entry points are. Child processes always run the
// compiled JavaScript in dist/, also when this module is loaded from the
// TypeScript sources (ts-jest): `npm run build` comes first.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package root (the folder holding package.json and bin/). */
export const ROOT = (() => {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin', 'c10m.js'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`could not find the c10m package root above ${__dirname}`);
})();

export const CLI = path.join(ROOT, 'bin', 'c10m.js');

/** dist/bench/<rel>.js */
export function benchEntry(rel: string): string {
  return path.join(ROOT, 'dist', 'bench', `${rel}.js`);
}
