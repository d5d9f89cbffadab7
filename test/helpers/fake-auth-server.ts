// A spec peer for the SDK's side of issue 16 (entitlement and admission): a
// small Node http + ws server that speaks the wire protocol of
// protocol/PROTOCOL.md for exactly what test/sdk-auth.test.ts exercises, so
// that the SDK can be tested on real loopback sockets before (and besides)
// the real server. It is not c10m and mocks nothing of it: JSON only, one
// epoch, no deliveries. What it does, as the spec says:
// - upgrade: admission first (a hook: 503 RETRY_LATER with retryAfterMs and a
//   ticket, or 429 RATE_LIMITED), then the token (`?token=`, HS256 via jose):
//   invalid -> 401 UNAUTHORIZED, expired -> 401 TOKEN_EXPIRED, each with the
//   spec's JSON body and www-authenticate header;
// - a session's token exp passes -> close 4003;
// - sub: per-topic {"error":{"code":"FORBIDDEN"}} entries for topics outside
//   the `subscribe` claim (an error reply FORBIDDEN when none is allowed);
// - auth: a new token for the same sub; topics it no longer allows are
//   unsubscribed and listed in "revoked".
import http from 'node:http';
import type net from 'node:net';
import { randomBytes } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { WebSocketServer, type WebSocket } from 'ws';

export interface UpgradeRecord {
  atMs: number;
  url: URL;
  token: string | null;
  admit: string | null;
  /** 101 once opened, else the refusal's status. */
  status: number;
}

export interface Refusal {
  status: 401 | 429 | 503;
  code: string;
  message?: string;
  retryAfterMs?: number;
  ticket?: string;
}

export interface PeerSession {
  ws: WebSocket;
  sub: string;
  /** The token's exp (unix seconds), or null. */
  exp: number | null;
  subscribe: string[];
  topics: Set<string>;
  expiry: NodeJS.Timeout | null;
}

export class SpecPeer {
  readonly upgrades: UpgradeRecord[] = [];
  /** Every command received, with the session it came on. */
  readonly commands: { session: PeerSession; cmd: Record<string, unknown> }[] = [];
  readonly sessions = new Set<PeerSession>();
  /** Admission, checked before the token (the spec's order); a Refusal answers the upgrade. */
  admission: (u: UpgradeRecord) => Refusal | null = () => null;
  private readonly wss = new WebSocketServer({ noServer: true });

  private constructor(
    private readonly server: http.Server,
    private readonly secret: Uint8Array,
  ) {
    server.on('upgrade', (req, socket, head) => void this.onUpgrade(req, socket as net.Socket, head));
  }

  static async start(secret: Uint8Array): Promise<SpecPeer> {
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new SpecPeer(server, secret);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /**
   * Node admission as the spec has it, in small: refuses the next `refuse`
   * upgrades that carry no valid ticket with 503 RETRY_LATER, retryAfterMs and
   * a fresh single-use ticket; admits an upgrade that brings one back no
   * earlier than retryAfterMs after it was issued.
   */
  admitWithTickets(refuse: number, retryAfterMs: number): void {
    const issued = new Map<string, number>();
    let left = refuse;
    this.admission = (u) => {
      const at = u.admit === null ? undefined : issued.get(u.admit);
      if (at !== undefined && u.atMs >= at + retryAfterMs) {
        issued.delete(u.admit as string);
        return null;
      }
      if (left <= 0) return null;
      left--;
      const ticket = randomBytes(12).toString('base64url');
      issued.set(ticket, u.atMs);
      return { status: 503, code: 'RETRY_LATER', message: 'admission rate reached; come back later', retryAfterMs, ticket };
    };
  }

  commandsOf(op: string): Record<string, unknown>[] {
    return this.commands.filter((c) => c.cmd.op === op).map((c) => c.cmd);
  }

  /** Closes every session with `code` (1011: the server failed, reconnect). */
  closeAll(code: number, reason = ''): void {
    for (const s of this.sessions) s.ws.close(code, reason);
  }

  async stop(): Promise<void> {
    for (const s of this.sessions) {
      if (s.expiry) clearTimeout(s.expiry);
      s.ws.terminate();
    }
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://peer');
    const u: UpgradeRecord = { atMs: Date.now(), url, token: url.searchParams.get('token'), admit: url.searchParams.get('admit'), status: 0 };
    this.upgrades.push(u);
    const refused = this.admission(u);
    if (refused !== null) return this.refuse(u, socket, refused);
    let claims: JWTPayload | null = null;
    if (u.token !== null) {
      try {
        claims = (await jwtVerify(u.token, this.secret, { algorithms: ['HS256'] })).payload;
      } catch (e) {
        const expired = e instanceof joseErrors.JWTExpired;
        return this.refuse(u, socket, { status: 401, code: expired ? 'TOKEN_EXPIRED' : 'UNAUTHORIZED', message: expired ? 'token expired' : `invalid token: ${(e as Error).message}` });
      }
    }
    if (claims === null) return this.refuse(u, socket, { status: 401, code: 'UNAUTHORIZED', message: 'this peer needs a token at the upgrade' });
    const payload = claims;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      u.status = 101;
      const s: PeerSession = { ws, sub: String(payload.sub ?? ''), exp: null, subscribe: claimList(payload.subscribe), topics: new Set(), expiry: null };
      this.sessions.add(s);
      this.setExpiry(s, payload.exp ?? null);
      ws.on('message', (data) => this.onCommand(s, JSON.parse(String(data)) as Record<string, unknown>));
      ws.on('close', () => {
        if (s.expiry) clearTimeout(s.expiry);
        this.sessions.delete(s);
      });
    });
  }

  private refuse(u: UpgradeRecord, socket: net.Socket, r: Refusal): void {
    u.status = r.status;
    const error: Record<string, unknown> = { code: r.code, message: r.message ?? r.code };
    if (r.retryAfterMs !== undefined) error.retryAfterMs = r.retryAfterMs;
    if (r.ticket !== undefined) error.ticket = r.ticket;
    const body = JSON.stringify({ error });
    const reason = { 401: 'Unauthorized', 429: 'Too Many Requests', 503: 'Service Unavailable' }[r.status];
    const headers = [`HTTP/1.1 ${r.status} ${reason}`, 'content-type: application/json', `content-length: ${Buffer.byteLength(body)}`, 'connection: close'];
    if (r.status === 401) headers.push('www-authenticate: Bearer error="invalid_token"');
    if (r.retryAfterMs !== undefined) headers.push(`retry-after: ${r.status === 429 ? 1 : Math.max(1, Math.floor(r.retryAfterMs / 1000))}`);
    socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
  }

  /** Close 4003 when exp passes (the real server's sweep does it within about a second). */
  private setExpiry(s: PeerSession, exp: number | null): void {
    if (s.expiry) clearTimeout(s.expiry);
    s.exp = exp;
    s.expiry = exp === null ? null : setTimeout(() => s.ws.close(4003, 'token expired; fetch a new token and reconnect'), Math.max(0, exp * 1000 - Date.now()));
  }

  private onCommand(s: PeerSession, cmd: Record<string, unknown>): void {
    this.commands.push({ session: s, cmd });
    const id = cmd.id;
    const reply = (r: Record<string, unknown>) => s.ws.send(JSON.stringify({ id, ...r }));
    switch (cmd.op) {
      case 'ping':
        return reply({ ok: true, ts: Date.now() * 1000, wg: 0 });
      case 'sub': {
        const topics = cmd.topics as string[];
        const resume = (cmd.resume ?? {}) as Record<string, [number, number]>;
        const entries: Record<string, unknown> = {};
        let allowed = 0;
        for (const t of topics) {
          if (!allows(s.subscribe, t, s.sub)) {
            entries[t] = { error: { code: 'FORBIDDEN', message: `the token does not allow subscribing to ${t}` } };
            continue;
          }
          allowed++;
          s.topics.add(t);
          // One epoch and no messages: a resume from (1, 0) is recovered with nothing to replay.
          entries[t] = resume[t] ? { epoch: 1, seq: 0, recovered: true, replayed: 0 } : { epoch: 1, seq: 0 };
        }
        if (allowed === 0) return reply({ error: { code: 'FORBIDDEN', message: 'the token allows none of these topics' } });
        return reply({ ok: true, topics: entries });
      }
      case 'unsub':
        for (const t of cmd.topics as string[]) s.topics.delete(t);
        return reply({ ok: true });
      case 'auth':
        return void this.onAuth(s, String(cmd.token), reply);
      default:
        return reply({ error: { code: 'UNKNOWN_OP', message: `this peer does not do ${String(cmd.op)}` } });
    }
  }

  private async onAuth(s: PeerSession, token: string, reply: (r: Record<string, unknown>) => void): Promise<void> {
    let claims: JWTPayload;
    try {
      claims = (await jwtVerify(token, this.secret, { algorithms: ['HS256'] })).payload;
    } catch (e) {
      const expired = e instanceof joseErrors.JWTExpired;
      return reply({ error: { code: expired ? 'TOKEN_EXPIRED' : 'UNAUTHORIZED', message: (e as Error).message } });
    }
    if (String(claims.sub ?? '') !== s.sub) return reply({ error: { code: 'UNAUTHORIZED', message: 'a refresh must carry the same sub' } });
    s.subscribe = claimList(claims.subscribe);
    const revoked = [...s.topics].filter((t) => !allows(s.subscribe, t, s.sub));
    for (const t of revoked) s.topics.delete(t);
    this.setExpiry(s, claims.exp ?? null);
    reply({ ok: true, exp: claims.exp ?? null, sub: s.sub, ...(revoked.length > 0 ? { revoked } : {}) });
  }
}

function claimList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((p): p is string => typeof p === 'string') : [];
}

/** The spec's patterns: `*` one segment, `>` (last) one or more, `{sub}` the token's sub. */
export function allows(patterns: string[], topic: string, sub: string): boolean {
  const t = topic.split('/').slice(1);
  return patterns.some((p) => {
    const segs = p.split('/').slice(1);
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i].split('{sub}').join(sub);
      if (seg === '>' && i === segs.length - 1) return t.length > i;
      if (i >= t.length || (seg !== '*' && seg !== t[i])) return false;
    }
    return segs.length === t.length;
  });
}
