// --redis-url: the seed URLs of the Redis a node shares with the others,
// checked strictly and turned into ioredis connection options. Here, not in
// server/, because both planes read it: the control plane validates the
// flag and checks Redis at start, the workgroups connect with what it
// returns. Plain functions over node:net's address checks: a workgroup
// loads nothing more.
//
//   redis://[user[:password]@]host[:port][/db]     rediss:// for TLS
//
// A password never appears in an error or a log line: maskRedisUrl shows
// it as ***.
import { isIPv4, isIPv6 } from 'node:net';

/** One Redis server to connect to, as ioredis's `new Redis(options)` (and a Cluster's seed node plus `redisOptions`) take it. */
export interface RedisEndpoint {
  host: string;
  port: number;
  /** ACL user (absent: the default user). */
  username?: string;
  password?: string;
  /** rediss://: TLS with Node's defaults (the system's CAs, plus NODE_EXTRA_CA_CERTS). */
  tls?: Record<string, never>;
  /** Standalone only: the database the URL's path names. */
  db?: number;
}

/** A URL that is not one c10m can use; the message names the URL (password masked) and what is wrong. */
export class RedisUrlError extends Error {}

export const DEFAULT_REDIS_PORT = 6379;

/** Splits a comma-separated --redis-url value into URLs (blank items dropped). */
export function splitRedisUrls(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** The URL as written, its password (if any) replaced by ***: safe for errors and logs, even when the URL does not parse. */
export function maskRedisUrl(url: string): string {
  const schemeEnd = url.indexOf('://');
  const start = schemeEnd >= 0 ? schemeEnd + 3 : 0;
  const at = url.lastIndexOf('@');
  if (at < start) return url;
  const colon = url.indexOf(':', start);
  if (colon < 0 || colon > at) return url;
  return `${url.slice(0, colon + 1)}***${url.slice(at)}`;
}

/** Parses one URL; throws RedisUrlError. */
export function parseRedisUrl(url: string): RedisEndpoint {
  const shown = maskRedisUrl(url);
  const bad = (what: string) => new RedisUrlError(`redis URL "${shown}" ${what}`);
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (!m) throw bad('must start with redis:// or rediss:// (TLS), e.g. redis://127.0.0.1:6379');
  const scheme = m[1].toLowerCase();
  if (scheme !== 'redis' && scheme !== 'rediss') throw bad(`has the scheme ${m[1]}://: only redis:// and rediss:// (TLS) are supported`);
  const rest = url.slice(m[0].length);
  // The last @ ends the credentials, so a password may hold @, : or / (better percent-encoded).
  const at = rest.lastIndexOf('@');
  const userinfo = at >= 0 ? rest.slice(0, at) : null;
  const afterAt = rest.slice(at + 1);
  const hostEnd = afterAt.search(/[/?#]/);
  const hostPort = hostEnd >= 0 ? afterAt.slice(0, hostEnd) : afterAt;
  const tail = hostEnd >= 0 ? afterAt.slice(hostEnd) : '';

  const endpoint: RedisEndpoint = { host: '', port: DEFAULT_REDIS_PORT };
  if (userinfo !== null) {
    const colon = userinfo.indexOf(':');
    const user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, 'user name', bad);
    const password = colon >= 0 ? decode(userinfo.slice(colon + 1), 'password', bad) : '';
    if (user === '' && password === '') throw bad('has an @ but no user name or password before it');
    if (user !== '') endpoint.username = user;
    if (password !== '') endpoint.password = password;
  }

  let host: string;
  let portText: string | null;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) throw bad('has an IPv6 address without its closing ]');
    host = hostPort.slice(1, close);
    const after = hostPort.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw bad(`has "${after}" after the IPv6 address [${host}]: expected :port`);
    portText = after === '' ? null : after.slice(1);
    if (!isIPv6(host)) throw bad(`has "[${host}]", which is not an IPv6 address`);
  } else {
    const colon = hostPort.lastIndexOf(':');
    host = colon >= 0 ? hostPort.slice(0, colon) : hostPort;
    portText = colon >= 0 ? hostPort.slice(colon + 1) : null;
    if (host === '') throw bad('has no host: expected e.g. redis://127.0.0.1:6379');
    if (host.includes(':')) throw bad(`has "${hostPort}" as its host: write an IPv6 address in brackets, e.g. redis://[::1]:6379`);
    if (!/^[A-Za-z0-9._-]+$/.test(host) || host.length > 253) throw bad(`has "${host}" as its host, which is not a host name or an address`);
    if (/^[\d.]+$/.test(host) && !isIPv4(host)) throw bad(`has "${host}" as its host, which is not an IPv4 address`);
  }
  endpoint.host = host;
  if (portText !== null) {
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw bad(`has the port "${portText}": expected a whole number from 1 to 65535`);
    endpoint.port = port;
  }

  if (tail.includes('?')) throw bad('has query parameters, which c10m does not read: remove everything from the ?');
  if (tail.includes('#')) throw bad('has a fragment (#...): remove it');
  if (tail !== '' && tail !== '/') {
    const db = /^\/(\d{1,9})$/.exec(tail);
    if (!db) throw bad(`has the path "${tail}": the only path allowed is a database number, e.g. /0`);
    endpoint.db = Number(db[1]);
  }
  if (scheme === 'rediss') endpoint.tls = {};
  return endpoint;
}

/**
 * The endpoints of a --redis-url list, checked together: several URLs only
 * for Redis Cluster (they are seeds of one cluster: same scheme, same
 * credentials), a database number other than 0 only for a standalone Redis.
 * Throws RedisUrlError.
 */
export function redisConnectionOptions(urls: readonly string[], cluster: boolean): RedisEndpoint[] {
  if (urls.length === 0) throw new RedisUrlError('no redis URL given: expected e.g. redis://127.0.0.1:6379');
  const endpoints = urls.map(parseRedisUrl);
  const shown = (i: number) => `"${maskRedisUrl(urls[i])}"`;
  if (!cluster && urls.length > 1) {
    throw new RedisUrlError(
      `${urls.length} redis URLs given (${urls.map((_, i) => shown(i)).join(', ')}) without Redis Cluster mode: a standalone Redis takes one URL; several are seeds of one Redis Cluster`,
    );
  }
  if (cluster) {
    endpoints.forEach((e, i) => {
      if (e.db !== undefined && e.db !== 0) throw new RedisUrlError(`redis URL ${shown(i)} names database ${e.db}, but Redis Cluster has only database 0: remove /${e.db}`);
      // /0 is allowed and dropped: ioredis's Cluster refuses SELECT.
      delete e.db;
    });
    const first = endpoints[0];
    endpoints.forEach((e, i) => {
      if ((e.tls !== undefined) !== (first.tls !== undefined))
        throw new RedisUrlError(`redis URLs ${shown(0)} and ${shown(i)} mix redis:// and rediss://: the seeds of one cluster all use TLS or none does`);
      if (e.username !== first.username || e.password !== first.password) {
        throw new RedisUrlError(`redis URLs ${shown(0)} and ${shown(i)} have different credentials: the seeds of one cluster take the same user and password`);
      }
    });
  }
  return endpoints;
}

function decode(text: string, what: string, bad: (what: string) => RedisUrlError): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw bad(`has a bad %-escape in its ${what}: encode a % as %25`);
  }
}
