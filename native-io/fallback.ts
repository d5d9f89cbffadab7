// Pure-JS stand-ins for each addon function, used when the addon did not
// build or load, or C10M_NATIVE_DISABLED=1. They check arguments exactly as
// the addon does, and where JS cannot do the job they say so in the result
// instead of pretending.
import * as os from 'node:os';
import { integerArg } from './args';
import { noFileLimitFromProc } from './procfs';

// Bytes of live fallback arenas made by this thread. Per thread, unlike the
// addon's process-wide counters: JS has no memory shared between threads to
// count in, short of a SharedArrayBuffer of its own.
let jsBytes = 0;
const released = new FinalizationRegistry<number>((bytes) => {
  jsBytes -= bytes;
});

export function allocShared(bytes: number): { buffer: SharedArrayBuffer; path: 'js'; bytes: number } {
  integerArg(bytes, 'bytes', 1, os.totalmem(), 'the physical memory');
  const buffer = new SharedArrayBuffer(bytes);
  jsBytes += bytes;
  released.register(buffer, bytes);
  return { buffer, path: 'js', bytes };
}

export function arenaJsBytes(): number {
  return jsBytes;
}

export function attachIpHash(port: number, groups: number, why: string): { attached: false; reason: string } {
  integerArg(port, 'port', 1, 65535);
  integerArg(groups, 'groups', 1, 65535);
  return {
    attached: false,
    reason: `native-io is not loaded (${why}); JavaScript cannot attach a BPF program to a socket, so port ${port} keeps the kernel's 4-tuple hash and one client address may reach several workgroups`,
  };
}

export function raiseNoFileLimit(why: string): { soft: number; hard: number; previousSoft: number; reason: string | null } {
  const { soft, hard } = noFileLimitFromProc();
  return {
    soft,
    hard,
    previousSoft: soft,
    reason: `native-io is not loaded (${why}); JavaScript cannot call setrlimit, so the open-file soft limit stays at ${soft} (hard limit ${hard})`,
  };
}
