// --auth and its keys, checked at start: the secret's length, that the PEM
// file holds a public key jose can verify with, that the JWKS URL is one we
// may fetch, that the API keys file is well formed. Each mistake is a
// ConfigError of one sentence (exit 2), before anything listens. The
// workgroups get the key material as text (they cannot read the files
// again: a restarted workgroup must not fail on a file moved since).
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { compilePattern } from '../protocol/patterns';
import type { ApiKey, AuthOptions } from '../shm/workgroup-init';
import { ConfigError, isLoopbackHost, type Config } from './config';

/** Shortest HS secret (RFC 7518 3.2: a key of at least the hash's size; 32 bytes for HS256). */
export const MIN_SECRET_BYTES = 32;
export const MIN_API_KEY_CHARS = 32;

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${what} ${path}: ${code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
  }
}

/** The workgroups' AuthOptions from the config, every key checked; throws ConfigError. */
export function loadAuth(c: Config): AuthOptions {
  const none: AuthOptions = {
    mode: 'none',
    secret: '',
    publicKeyPem: '',
    jwksUrl: '',
    jwksCooldownSeconds: c.jwksCooldownSeconds,
    issuer: '',
    audience: '',
    clockSkewSeconds: c.jwtClockSkewSeconds,
    timeoutSeconds: c.authTimeoutSeconds,
    apiKeys: [],
  };
  const given = [
    c.jwtSecret && '--jwt-secret',
    c.jwtSecretFile && '--jwt-secret-file',
    c.jwtPublicKeyFile && '--jwt-public-key-file',
    c.jwksUrl && '--jwks-url',
    c.apiKeysFile && '--api-keys-file',
  ].filter((x) => x !== '');
  if (c.auth === 'none') {
    if (given.length > 0) throw new ConfigError(`${given.join(', ')} given with --auth none: set --auth jwt to use them (or remove them)`);
    return none;
  }
  if (c.jwtSecret !== '' && c.jwtSecretFile !== '') throw new ConfigError('--jwt-secret and --jwt-secret-file both given: use one');
  const secret = c.jwtSecretFile !== '' ? readText(c.jwtSecretFile, '--jwt-secret-file').replace(/\r?\n$/, '') : c.jwtSecret;
  if (secret !== '' && Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError(`the JWT secret is ${Buffer.byteLength(secret, 'utf8')} bytes: at least ${MIN_SECRET_BYTES} are needed (e.g. openssl rand -base64 48)`);
  }
  let publicKeyPem = '';
  if (c.jwtPublicKeyFile !== '') {
    publicKeyPem = readText(c.jwtPublicKeyFile, '--jwt-public-key-file');
    try {
      const key = createPublicKey(publicKeyPem);
      if (!['rsa', 'rsa-pss', 'ec', 'ed25519', 'ed448'].includes(key.asymmetricKeyType ?? '')) throw new Error(`a ${key.asymmetricKeyType} key`);
    } catch (err) {
      throw new ConfigError(`--jwt-public-key-file ${c.jwtPublicKeyFile}: not a PEM public key this server verifies with (RSA, EC, Ed25519): ${(err as Error).message.split('\n')[0]}`);
    }
  }
  if (c.jwksUrl !== '') {
    let u: URL;
    try {
      u = new URL(c.jwksUrl);
    } catch {
      throw new ConfigError(`--jwks-url ${c.jwksUrl}: not a URL`);
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackHost(u.hostname))) {
      throw new ConfigError(`--jwks-url ${c.jwksUrl}: must be https:// (http:// only on a loopback address): keys fetched in clear could be replaced on the way`);
    }
  }
  if (secret === '' && publicKeyPem === '' && c.jwksUrl === '') {
    throw new ConfigError('--auth jwt needs a key to verify tokens with: --jwt-secret (or --jwt-secret-file), --jwt-public-key-file or --jwks-url');
  }
  const apiKeys = c.apiKeysFile === '' ? [] : parseApiKeys(readText(c.apiKeysFile, '--api-keys-file'), c.apiKeysFile);
  return {
    ...none,
    mode: 'jwt',
    secret,
    publicKeyPem,
    jwksUrl: c.jwksUrl,
    issuer: c.jwtIssuer,
    audience: c.jwtAudience,
    apiKeys,
  };
}

/** Parses the API keys file: {"keys":[{"name","key","publish":[patterns]}]}. */
export function parseApiKeys(text: string, path: string): ApiKey[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`--api-keys-file ${path}: not valid JSON (${(err as Error).message})`);
  }
  const keys = (v as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new ConfigError(`--api-keys-file ${path}: expected {"keys":[{"name":..,"key":..,"publish":[..]}]}`);
  const out: ApiKey[] = [];
  const seen = new Set<string>();
  keys.forEach((k: unknown, i) => {
    const e = k as Partial<ApiKey> | null;
    const where = `--api-keys-file ${path}: keys[${i}]`;
    if (e === null || typeof e !== 'object' || typeof e.name !== 'string' || e.name === '') throw new ConfigError(`${where}: needs a name`);
    if (typeof e.key !== 'string' || e.key.length < MIN_API_KEY_CHARS) throw new ConfigError(`${where} (${e.name}): key must be a string of at least ${MIN_API_KEY_CHARS} characters`);
    if (/\s/.test(e.key)) throw new ConfigError(`${where} (${e.name}): key must not hold spaces`);
    if (seen.has(e.key)) throw new ConfigError(`${where} (${e.name}): the same key twice`);
    seen.add(e.key);
    if (!Array.isArray(e.publish)) throw new ConfigError(`${where} (${e.name}): publish must be an array of topic patterns`);
    for (const p of e.publish) {
      const compiled = compilePattern(p);
      if (typeof compiled === 'string') throw new ConfigError(`${where} (${e.name}): ${compiled}`);
      if (compiled.usesSubject) throw new ConfigError(`${where} (${e.name}): {sub} has no meaning for an API key`);
    }
    out.push({ name: e.name, key: e.key, publish: e.publish as string[] });
  });
  return out;
}
