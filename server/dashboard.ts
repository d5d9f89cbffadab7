// /dashboard: a live page of charts on the admin port, fed once a second
// by /jmx. Its files are server/dashboard/ (HTML, JS, CSS, no build step)
// and uPlot's own dist files from node_modules; nothing comes from a CDN.
//
// The page's files are open routes (no admin token): they carry no figures
// and no configuration, and a browser cannot put a bearer token on a page
// load or a <script src>. The figures come from /jmx, which stays guarded:
// with --admin-token the page sends `Authorization: Bearer <token>` on every
// /jmx request. The token comes from the page URL, #token=... (best: a
// fragment never reaches a server or its logs) or ?token=..., which the
// page keeps in this tab's sessionStorage and removes from the address bar;
// or from the form the page shows when /jmx answers 401.
import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import type { AdminServer } from './admin';
import { packageRoot } from '../native-io/package-root';

interface Asset {
  file: string;
  contentType: string;
}

/** The dashboard's folder: beside this module when copied into dist/, else the source tree. */
export function dashboardDir(): string {
  const candidates = [path.join(__dirname, 'dashboard'), path.join(packageRoot(), 'server', 'dashboard')];
  for (const dir of candidates) if (existsSync(path.join(dir, 'index.html'))) return dir;
  throw new Error(`dashboard files not found (looked in ${candidates.join(', ')})`);
}

function uplotDir(): string {
  return path.join(path.dirname(require.resolve('uplot/package.json')), 'dist');
}

// The page runs only its own scripts and talks only to this port.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

export function registerDashboard(admin: AdminServer): void {
  const dir = dashboardDir();
  const uplot = uplotDir();
  const assets: Record<string, Asset> = {
    '/dashboard': { file: path.join(dir, 'index.html'), contentType: 'text/html; charset=utf-8' },
    '/dashboard/': { file: path.join(dir, 'index.html'), contentType: 'text/html; charset=utf-8' },
    '/dashboard/app.js': { file: path.join(dir, 'app.js'), contentType: 'text/javascript; charset=utf-8' },
    '/dashboard/app.css': { file: path.join(dir, 'app.css'), contentType: 'text/css; charset=utf-8' },
    '/dashboard/uplot.min.js': { file: path.join(uplot, 'uPlot.iife.min.js'), contentType: 'text/javascript; charset=utf-8' },
    '/dashboard/uplot.min.css': { file: path.join(uplot, 'uPlot.min.css'), contentType: 'text/css; charset=utf-8' },
  };
  for (const [route, asset] of Object.entries(assets)) {
    // Read once, on first request; a few tens of KB in all.
    let body: Buffer | null = null;
    const serve = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      body ??= readFileSync(asset.file);
      res.writeHead(200, {
        'content-type': asset.contentType,
        'content-length': body.length,
        'cache-control': 'no-cache',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    // Open: the files hold no figures (see the top of this file); /jmx keeps its token.
    admin.route(route, serve, { open: true });
  }
}
