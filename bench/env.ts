// The environment header every result starts with: what ran, where, on which
// native paths.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nativeStatus } from '../native-io';
import { loadgenStatus } from './loadgen';
import { loadUws } from '../native-io/uws';

export interface EnvHeader {
  date: string;
  host: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  kernel: string;
  /** uWebSockets.js native binary loaded (true) or its JS fallback. */
  uwsNative: boolean;
  uwsBinary: string | null;
  /** The c10m_native addon (server side) and where it is. */
  nativeIo: { loaded: boolean; path: string | null; error: string | null };
  /** The benchsub engine: c10m_loadgen.node or the JS fallback. */
  loadgen: { native: boolean; path: string | null; error: string | null };
  openFilesLimit: string;
  gitCommit: string | null;
  /** 1-minute load average when the run started and when it ended: other work on the machine skews every figure. */
  loadAverage: { start: number; end: number | null };
}

/** The checkout's HEAD commit (12 digits), also in a git worktree (where .git is a file naming the real git dir). */
function gitCommit(root: string): string | null {
  try {
    let gitDir = `${root}/.git`;
    if (fs.statSync(gitDir).isFile()) {
      const m = /^gitdir: (.+)$/m.exec(fs.readFileSync(gitDir, 'utf8'));
      if (!m) return null;
      gitDir = path.resolve(root, m[1].trim());
    }
    // A worktree's refs live in the main git dir (its "commondir").
    let common = gitDir;
    try {
      common = path.resolve(gitDir, fs.readFileSync(`${gitDir}/commondir`, 'utf8').trim());
    } catch {
      // not a worktree
    }
    const head = fs.readFileSync(`${gitDir}/HEAD`, 'utf8').trim();
    if (!head.startsWith('ref: ')) return head.slice(0, 12);
    const ref = head.slice(5);
    for (const dir of [gitDir, common]) {
      try {
        return fs.readFileSync(`${dir}/${ref}`, 'utf8').trim().slice(0, 12);
      } catch {
        // packed, or in the other dir
      }
    }
    const packed = fs.readFileSync(`${common}/packed-refs`, 'utf8');
    const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`));
    return line ? line.slice(0, 12) : null;
  } catch {
    return null;
  }
}

export function envHeader(root: string): EnvHeader {
  let uwsNative = false;
  let uwsBinary: string | null = null;
  try {
    const u = loadUws(false);
    uwsNative = u.native;
    uwsBinary = u.binaryPath;
  } catch {
    uwsNative = false;
  }
  const n = nativeStatus();
  const l = loadgenStatus();
  let nofile = 'unknown';
  try {
    const m = /Max open files\s+(\S+)\s+(\S+)/.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (m) nofile = `${m[1]} soft / ${m[2]} hard`;
  } catch {
    // not Linux
  }
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    uwsNative,
    uwsBinary,
    nativeIo: { loaded: n.loaded, path: n.addonPath, error: n.error },
    loadgen: { native: l.native, path: l.addonPath, error: l.error },
    openFilesLimit: nofile,
    gitCommit: gitCommit(root),
    loadAverage: { start: Math.round(os.loadavg()[0] * 100) / 100, end: null },
  };
}
