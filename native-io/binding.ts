// Loads the c10m_native addon once per thread, unless C10M_NATIVE_DISABLED=1.
// Only native-io/index.ts imports this.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findPackageRoot } from './package-root';

export type NativeArenaPath = 'hugetlb' | 'thp' | 'normal';

/** What src/*.cc export; see native-io/README.md for each function. */
export interface NativeBinding {
  allocShared(bytes: number, hugePages?: boolean): { buffer: SharedArrayBuffer; path: NativeArenaPath; bytes: number };
  /** Absent from builds older than this file (C10M_NATIVE_ADDON may name one). */
  allocSharedAsync?(bytes: number, hugePages?: boolean): Promise<{ buffer: SharedArrayBuffer; path: NativeArenaPath; bytes: number }>;
  arenaStats(): { hugetlbBytes: number; thpBytes: number; normalBytes: number; jsBytes: number };
  attachIpHash(port: number, groups: number, acrossProcesses?: boolean): { attached: true; fd: number; sockets: number; fds: number[] };
  noFileLimit(): { soft: number; hard: number };
  raiseNoFileLimit(): { soft: number; hard: number; previousSoft: number };
}

export interface NativeLoad {
  binding: NativeBinding | null;
  /** Why the addon is not in use, when it is not. */
  error: string | null;
  disabledByEnv: boolean;
  /** The file we loaded or tried to load; null when disabled before looking. */
  addonPath: string | null;
}

const ADDON_FILE = path.join('native-io', 'build', 'Release', 'c10m_native.node');

// The addon is found from the package root (native-io/package-root.ts), not from __dirname:
// this module runs from native-io/ (ts-jest) or dist/native-io/.

export function loadNative(): NativeLoad {
  if (process.env.C10M_NATIVE_DISABLED === '1') {
    return { binding: null, error: 'disabled by C10M_NATIVE_DISABLED=1', disabledByEnv: true, addonPath: null };
  }
  // C10M_NATIVE_ADDON names another build of the addon (the AddressSanitizer
  // build, see README.md).
  let addonPath = process.env.C10M_NATIVE_ADDON || null;
  if (!addonPath) {
    const root = findPackageRoot();
    if (!root) {
      return { binding: null, error: `could not find the c10m package root above ${__dirname}`, disabledByEnv: false, addonPath: null };
    }
    addonPath = path.join(root, ADDON_FILE);
  }
  if (!fs.existsSync(addonPath)) {
    return {
      binding: null,
      error: `${addonPath} does not exist: the addon was not built (run node native-io/build.js to see why)`,
      disabledByEnv: false,
      addonPath,
    };
  }
  try {
    const binding = require(addonPath) as NativeBinding;
    return { binding, error: null, disabledByEnv: false, addonPath };
  } catch (err) {
    return { binding: null, error: (err as Error).message.split('\n')[0], disabledByEnv: false, addonPath };
  }
}
