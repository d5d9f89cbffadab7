// The one module that loads uWebSockets.js. Everything else imports uWS from
// here, so the package can be swapped in one place.
//
// @trufflesuite/uws-js-unofficial silently falls back to a slow pure-JS
// implementation when its binary does not load. We load the binary ourselves
// so that we know which one we got, and refuse the fallback unless the
// caller explicitly allows it (`--allow-slow-fallback`, or
// C10M_ALLOW_SLOW_FALLBACK=1 in a worker's environment).
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';

export type Uws = typeof UwsTypes;
export type { TemplatedApp, WebSocket, HttpResponse, HttpRequest, us_listen_socket } from '@trufflesuite/uws-js-unofficial';

export interface UwsLoad {
  uws: Uws;
  native: boolean;
  /** Why the native binary did not load, when it did not. */
  nativeError: string | null;
  binaryPath: string;
}

const PKG = '@trufflesuite/uws-js-unofficial';

let cached: UwsLoad | null = null;

function binaryName(): string {
  return `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
}

/** Loads the native binary, or (only if `allowFallback`) the pure-JS fallback. Throws UwsFallbackRefused otherwise. */
export function loadUws(allowFallback: boolean): UwsLoad {
  if (cached && (cached.native || allowFallback)) return cached;
  const pkgDir = require.resolve(`${PKG}/package.json`).replace(/package\.json$/, '');
  const binaryPath = `${pkgDir}binaries/${binaryName()}`;
  let nativeError: string | null = null;
  if (process.env.UWS_USE_FALLBACK && /^(1|true)$/i.test(process.env.UWS_USE_FALLBACK)) {
    nativeError = 'UWS_USE_FALLBACK is set in the environment';
  } else {
    try {
      const uws = require(binaryPath) as Uws;
      cached = { uws, native: true, nativeError: null, binaryPath };
      return cached;
    } catch (err) {
      nativeError = (err as Error).message.split('\n')[0];
    }
  }
  if (!allowFallback) throw new UwsFallbackRefused(binaryPath, nativeError);

  const uws = require(`${pkgDir}dist/index.js`) as Uws;
  cached = { uws, native: false, nativeError, binaryPath };
  return cached;
}

export class UwsFallbackRefused extends Error {
  readonly code = 'UWS_NATIVE_MISSING';
  constructor(
    readonly binaryPath: string,
    readonly reason: string | null,
  ) {
    super(
      `uWebSockets.js native binary did not load (${binaryPath}: ${reason}). ` +
        'Its pure-JS fallback is many times slower and is refused; ' +
        'run on Node 20 / glibc >= 2.36 (linux x64 or arm64), or start with --allow-slow-fallback to accept it.',
    );
  }
}
