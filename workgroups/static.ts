// Static routes of the public port: the demo page at / and the browser SDK
// at /sdk/c10m.js (+ its source map). Files are read once, when the
// workgroup builds its App, and served from memory with an ETag; a file
// that is missing (the SDK bundle before `npm run build`) answers 503 with
// a sentence saying how to fix it, and never stops the server.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../native-io/uws';

/** The repository root, from dist/workgroups/static.js or workgroups/static.ts (ts-node, jest). */
function findRoot(): string {
  const up = path.join(__dirname, '..');
  return path.basename(up) === 'dist' ? path.join(up, '..') : up;
}

const ROOT = findRoot();
const BUNDLE_DIR = path.join(ROOT, 'dist', 'sdk-bundle');
const DEMO_DIR = path.join(ROOT, 'sdk', 'demo');

interface StaticFile {
  route: string;
  file: string;
  contentType: string;
  /** What to do when the file is missing. */
  missing: string;
}

export const STATIC_FILES: StaticFile[] = [
  { route: '/', file: path.join(DEMO_DIR, 'index.html'), contentType: 'text/html; charset=utf-8', missing: 'the demo page (sdk/demo/index.html) is missing from this installation' },
  { route: '/demo.js', file: path.join(DEMO_DIR, 'demo.js'), contentType: 'text/javascript; charset=utf-8', missing: 'the demo script (sdk/demo/demo.js) is missing from this installation' },
  { route: '/demo.css', file: path.join(DEMO_DIR, 'demo.css'), contentType: 'text/css; charset=utf-8', missing: 'the demo style sheet (sdk/demo/demo.css) is missing from this installation' },
  {
    route: '/sdk/c10m.js',
    file: path.join(BUNDLE_DIR, 'c10m.js'),
    contentType: 'text/javascript; charset=utf-8',
    missing: 'the SDK bundle is not built: run `npm run build` (it writes dist/sdk-bundle/c10m.js)',
  },
  {
    route: '/sdk/c10m.js.map',
    file: path.join(BUNDLE_DIR, 'c10m.js.map'),
    contentType: 'application/json; charset=utf-8',
    missing: 'the SDK source map is not built: run `npm run build` (it writes dist/sdk-bundle/c10m.js.map)',
  },
];

interface Loaded {
  body: Buffer | null;
  etag: string;
  contentType: string;
  missing: string;
}

function load(f: StaticFile): Loaded {
  let body: Buffer | null = null;
  try {
    body = readFileSync(f.file);
  } catch {
    body = null;
  }
  const etag = body === null ? '' : `"${createHash('sha1').update(body).digest('base64url').slice(0, 16)}"`;
  return { body, etag, contentType: f.contentType, missing: f.missing };
}

function serve(res: HttpResponse, req: HttpRequest, file: Loaded): void {
  if (file.body === null) {
    res.cork(() => {
      res
        .writeStatus('503 Service Unavailable')
        .writeHeader('content-type', 'text/plain; charset=utf-8')
        .writeHeader('cache-control', 'no-store')
        .writeHeader('retry-after', '60')
        .end(`503: ${file.missing}.\n`);
    });
    return;
  }
  const body = file.body;
  const notModified = req.getHeader('if-none-match') === file.etag;
  res.cork(() => {
    res.writeStatus(notModified ? '304 Not Modified' : '200 OK');
    // The names do not change with the content, so caches must revalidate; the ETag makes that a 304.
    res.writeHeader('cache-control', 'no-cache');
    res.writeHeader('etag', file.etag);
    res.writeHeader('x-content-type-options', 'nosniff');
    if (notModified) {
      res.endWithoutBody();
      return;
    }
    res.writeHeader('content-type', file.contentType);
    res.end(body);
  });
}

export function registerStaticRoutes(app: TemplatedApp): void {
  for (const f of STATIC_FILES) {
    const loaded = load(f);
    app.get(f.route, (res, req) => serve(res, req, loaded));
  }
}
