// Where the compiled bench entry points are. Child processes always run the
// compiled JavaScript in dist/, also when this module is loaded from the
// TypeScript sources (ts-jest): `npm run build` comes first.
import * as path from 'node:path';
import { packageRoot } from '../native-io/package-root';

/** The package root (the folder holding package.json and bin/). */
export const ROOT = packageRoot();

export const CLI = path.join(ROOT, 'bin', 'c10m.js');

/** dist/bench/<rel>.js */
export function benchEntry(rel: string): string {
  return path.join(ROOT, 'dist', 'bench', `${rel}.js`);
}
