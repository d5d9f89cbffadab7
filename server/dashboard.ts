// /dashboard: a live page of charts on the admin port, fed once a second
// by /jmx. Its files are server/dashboard/ (HTML, JS, CSS, no build step)
// and uPlot's own dist files from node_modules; nothing comes from a CDN.
//
// The page carries no figures itself; with --admin-token it sends the token
// as `Authorization: Bearer` on every /jmx request (the token comes from the
// page URL's #token=... or ?token=..., or a form on the page).
import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import type { AdminServer } from './admin';

interface Asset {
  file: string;
  contentType: string;
}

/** The dashboard's folder: beside this module when copied into dist/, else the source tree. */
export function dashboardDir(): string {
  const candidates = [path.join(__dirname, 'dashboard'), path.join(__dirname, '..', '..', 'server', 'dashboard')];
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
    admin.route(route, (req: http.IncomingMessage, res: http.ServerResponse) => {
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
    });
  }
}
