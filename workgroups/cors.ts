// Which web origins may use the public port from a browser (--cors-origins).
// A page on another origin can POST text/plain, form or multipart bodies
// without a CORS preflight, and can open a WebSocket to any server; the
// browser then sends an Origin header, which is the only thing a server can
// check. Same-origin requests (Origin is this host) are always allowed.

export class CorsPolicy {
  /** '*': any origin. */
  readonly any: boolean;
  private readonly origins: Set<string>;

  /** origins: exact origins (scheme://host[:port]), or ['*']; empty: none. */
  constructor(origins: readonly string[]) {
    this.any = origins.includes('*');
    this.origins = new Set(origins.map((o) => o.toLowerCase()));
  }

  /** Whether --cors-origins names any origin at all. */
  get configured(): boolean {
    return this.any || this.origins.size > 0;
  }

  /** A cross-origin request from `origin` may be answered with CORS headers. */
  allows(origin: string): boolean {
    return this.any || this.origins.has(origin.toLowerCase());
  }

  /** The request comes from a page served by this host (host: the Host header). */
  static sameOrigin(origin: string, host: string): boolean {
    if (host === '') return false;
    const o = origin.toLowerCase();
    const h = host.toLowerCase();
    return o === `http://${h}` || o === `https://${h}`;
  }
}
