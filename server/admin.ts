// The admin port: health, readiness and (registered by other modules)
// metrics and dashboard routes. Bound to 127.0.0.1 unless told otherwise;
// an optional bearer token guards every route but the open ones: /healthz,
// and those registered with { open: true }.
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './log';
import { portErrorSentence } from './ports';

export type AdminHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

export interface AdminOptions {
  host: string;
  port: number;
  token: string;
}

export interface RouteOptions {
  /** Served without the admin token. Only for routes that disclose no figures and no configuration. */
  open?: boolean;
}

interface Route {
  handler: AdminHandler;
  open: boolean;
  /** Answers POST as well as GET and HEAD. */
  post: boolean;
}

/** Open whoever registers it: a liveness probe has no token to send. */
const ALWAYS_OPEN = new Set(['/healthz']);

export class AdminServer {
  private readonly routes = new Map<string, Route>();
  private server: http.Server | null = null;

  /** SHA-256 of `Bearer <token>`, or null when no token is set. */
  private readonly expected: Buffer | null;

  constructor(
    private readonly options: AdminOptions,
    private readonly log: Logger,
  ) {
    this.expected = options.token === '' ? null : sha256(`Bearer ${options.token}`);
  }

  /**
   * In constant time whatever the header: the digests of both are compared, so the time taken tells nothing
   * about how much of a guess matched, nor about the token's length.
   */
  private authorized(header: string | undefined): boolean {
    const expected = this.expected;
    if (expected === null) return true;
    return timingSafeEqual(sha256(typeof header === 'string' ? header : ''), expected);
  }

  /** Adds a POST route (also answering GET and HEAD with the same handler only if it checks req.method). */
  routePost(path: string, handler: AdminHandler, options: RouteOptions = {}): void {
    this.add(path, handler, options, true);
  }

  /** Adds a GET (and HEAD) route, e.g. route('/metrics', handler); with { open: true } it needs no admin token. */
  route(path: string, handler: AdminHandler, options: RouteOptions = {}): void {
    this.add(path, handler, options, false);
  }

  private add(path: string, handler: AdminHandler, options: RouteOptions, post: boolean): void {
    this.routes.set(path, { handler, open: options.open === true || ALWAYS_OPEN.has(path), post });
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  listen(): Promise<number> {
    const server = http.createServer((req, res) => this.handle(req, res));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(new Error(portErrorSentence(err, this.options.host, this.options.port, 'admin port')));
      server.once('error', onError);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', onError);
        resolve(this.port);
      });
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = this.routes.get(url.pathname);
    const methodOk = req.method === 'GET' || req.method === 'HEAD' || (req.method === 'POST' && route?.post === true);
    if (!route || !methodOk) {
      return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no admin route ${req.method} ${url.pathname}` } });
    }
    if (this.expected !== null && !route.open && !this.authorized(req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer realm="c10m admin"');
      return sendJson(res, 401, { error: { code: 'UNAUTHORIZED', message: 'admin token required: Authorization: Bearer <token>' } });
    }
    Promise.resolve()
      .then(() => route.handler(req, res))
      .catch((err) => {
        this.log.error({ err, path: url.pathname }, 'admin route failed');
        if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: 'admin route failed' } });
        else res.end();
      });
  }

  close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}
