// Every js and sh code block of README.md and sdk/README.md runs as written
// against a real server (ports 8080 and 9090 replaced by the test server's),
// unless a `<!-- not run: why -->` comment right above it says why not
// (browser, interactive, installs). Node blocks run as .mjs files in a
// temporary folder whose node_modules/c10m is this checkout, so that
// `import ... from 'c10m/sdk'` resolves as it would for a user.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT, startServer, type TestServer } from './helpers/server';

interface Snippet {
  file: string;
  line: number;
  lang: string;
  code: string;
  /** The reason given by `<!-- not run: reason -->`, or null: it runs. */
  notRun: string | null;
}

const RUNNABLE = new Set(['js', 'javascript', 'mjs', 'ts', 'typescript', 'sh', 'bash', 'shell']);

function snippets(file: string): Snippet[] {
  const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i]);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    let prev = i - 1;
    while (prev >= 0 && lines[prev].trim() === '') prev--;
    const marker = prev >= 0 ? /^<!--\s*not run:\s*(.+?)\s*-->$/.exec(lines[prev].trim()) : null;
    out.push({ file, line: i + 1, lang: open[1], code: lines.slice(i + 1, end).join('\n') + '\n', notRun: marker ? marker[1] : null });
    i = end;
  }
  return out.filter((s) => RUNNABLE.has(s.lang));
}

const all = [...snippets('README.md'), ...snippets('sdk/README.md')];
const toRun = all.filter((s) => s.notRun === null);

let server: TestServer;
let dir: string;

beforeAll(async () => {
  server = await startServer(['--workgroups', '2']);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-readme-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'c10m'), 'dir');
  // npm hoists c10m's dependencies next to it: a snippet may import jose as a user's code would.
  fs.symlinkSync(path.join(ROOT, 'node_modules', 'jose'), path.join(dir, 'node_modules', 'jose'), 'dir');
});

afterAll(async () => {
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The snippet aimed at the test server. */
function localise(code: string): string {
  return code
    .replace(/localhost:8080/g, `127.0.0.1:${server.port}`)
    .replace(/:8080\b/g, `:${server.port}`)
    .replace(/localhost:9090/g, `127.0.0.1:${server.adminPort}`)
    .replace(/:9090\b/g, `:${server.adminPort}`);
}

test('the README code blocks are found, and the ones not run say why', () => {
  expect(toRun.length).toBeGreaterThanOrEqual(4);
  for (const s of all) if (s.notRun !== null) expect(s.notRun.length).toBeGreaterThan(2);
});

test.each(toRun.map((s) => [`${s.file}:${s.line} (${s.lang})`, s] as const))('%s runs as written', (_name, s) => {
  let r;
  if (s.lang === 'sh' || s.lang === 'bash' || s.lang === 'shell') {
    r = spawnSync('sh', ['-e', '-c', localise(s.code)], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
  } else if (s.lang === 'js' || s.lang === 'javascript' || s.lang === 'mjs') {
    const file = path.join(dir, `snippet-${path.basename(s.file, '.md')}-${s.line}.mjs`);
    fs.writeFileSync(file, localise(s.code));
    r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
  } else {
    throw new Error(`${s.file}:${s.line}: a ${s.lang} block: mark it <!-- not run: why --> or teach this test to run it`);
  }
  if (r.status !== 0) throw new Error(`${s.file}:${s.line} exited ${r.status} ${r.signal ?? ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  expect(r.stderr).toBe('');
});
