// The package root: the first folder above this module whose package.json is
// c10m's. The one way the modules find it (server/, native-io/, bench/,
// test/; standalone scripts such as bin/c10m.js and the build scripts keep
// their own two lines). It lives here, in a folder with no imports, because
// every other folder may import native-io/ (test/boundaries.test.ts), and it
// runs from the sources (ts-jest), dist/ and dist-lab/ alike.
import * as fs from 'node:fs';
import * as path from 'node:path';

let cached: string | null | undefined;

/** The package root, or null when there is none above this module (a bundled copy). */
export function findPackageRoot(): string | null {
  if (cached !== undefined) return cached;
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'c10m') return (cached = dir);
      } catch {
        // An unreadable package.json is not ours; keep climbing.
      }
    }
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return (cached = null);
}

/** The package root; throws when there is none. */
export function packageRoot(): string {
  const root = findPackageRoot();
  if (root === null) throw new Error(`could not find the c10m package root above ${__dirname}`);
  return root;
}

/** The version in the package's package.json. */
export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
