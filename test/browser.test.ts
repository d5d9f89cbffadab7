// The demo page and the browser SDK in a real browser: Debian's chromium,
// headless, driven by playwright-core, against a real server. A message
// published with curl appears on the page; a message published from the page
// reaches a Node subscriber. Screenshots go to test-artifacts/.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, startServer, type TestServer } from './helpers/server';
import { connect, type C10mClient } from '../sdk/client';
import type { Message } from '../sdk/wire';

jest.setTimeout(60_000);

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const run = promisify(execFile);

let server: TestServer;
let context: BrowserContext;
let userDataDir: string;
let node: C10mClient;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does it)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer(['--workgroups', '1']);
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 820 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  node = connect(`ws://127.0.0.1:${server.port}`, { encoding: 'msgpack', reconnect: false });
  await node.ready();
});

afterAll(async () => {
  await node?.close();
  await context?.close();
  await server?.stop();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

async function openDemo(query: string): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(msg.text());
  });
  await page.goto(`http://127.0.0.1:${server.port}/${query}`);
  await page.waitForSelector('#state[data-state="connected"]', { timeout: 10_000 });
  await page.waitForSelector('#subs li[data-ready="true"]', { timeout: 10_000 });
  return page;
}

async function curlPublish(topic: string, data: unknown): Promise<{ epoch: number; seq: number }> {
  const { stdout } = await run('curl', [
    '-sS',
    '--fail-with-body',
    '-X',
    'POST',
    `http://127.0.0.1:${server.port}/v1/publish`,
    '-H',
    'content-type: application/json',
    '-d',
    JSON.stringify({ topic, data }),
  ]);
  return JSON.parse(stdout);
}

test('the server serves the demo page and the SDK bundle with its source map', async () => {
  const base = `http://127.0.0.1:${server.port}`;
  const page = await fetch(`${base}/`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(await page.text()).toContain('<script type="module" src="/demo.js">');
  const bundle = await fetch(`${base}/sdk/c10m.js`);
  expect(bundle.status).toBe(200);
  expect(bundle.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
  expect(bundle.headers.get('cache-control')).toBe('no-cache');
  const etag = bundle.headers.get('etag');
  expect(etag).toMatch(/^".+"$/);
  const code = await bundle.text();
  expect(code).toBe(fs.readFileSync(path.join(ROOT, 'dist', 'sdk-bundle', 'c10m.js'), 'utf8'));
  expect(code).toMatch(/sourceMappingURL=c10m\.js\.map/);
  // Revalidation costs no body.
  const again = await fetch(`${base}/sdk/c10m.js`, { headers: { 'if-none-match': etag as string } });
  expect(again.status).toBe(304);
  const map = await fetch(`${base}/sdk/c10m.js.map`);
  expect(map.status).toBe(200);
  expect((await map.json()).sources).toEqual(expect.arrayContaining(['../../sdk/client.ts']));
});

test.each(['json', 'msgpack'] as const)('%s: a message published with curl appears on the demo page with its seq', async (encoding) => {
  const topic = `/browser/${encoding}/in`;
  const page = await openDemo(`?topic=${encodeURIComponent(topic)}&encoding=${encoding}`);
  const text = `hello from curl over ${encoding}`;
  const ack = await curlPublish(topic, { text });
  const row = page.locator(`#messages tbody tr[data-topic="${topic}"][data-seq="${ack.seq}"]`);
  await row.waitFor({ timeout: 10_000 });
  expect(await row.locator('td.data').textContent()).toBe(JSON.stringify({ text }));
  expect(await row.locator('td.seq').textContent()).toBe(String(ack.seq));
  expect(await row.locator('td.epoch').textContent()).toBe(String(ack.epoch));
  expect(await page.locator('#state').textContent()).toBe(`connected (${encoding})`);
  await page.screenshot({ path: path.join(ARTIFACTS, `browser-demo-${encoding}-receive.png`) });
  await page.close();
});

test.each(['json', 'msgpack'] as const)('%s: a message published from the page reaches a Node subscriber', async (encoding) => {
  const topic = `/browser/${encoding}/out`;
  const got: Message[] = [];
  await node.subscribe(topic, (m) => got.push(m)).ready;
  const page = await openDemo(`?topic=${encodeURIComponent(topic)}&encoding=${encoding}`);
  await page.fill('#pub-topic', topic);
  await page.fill('#pub-data', '{"text":"typed in the browser","n":7}');
  await page.click('#pub-button');
  await page.waitForSelector('#pub-result[data-seq]', { timeout: 10_000 });
  const seq = Number(await page.locator('#pub-result').getAttribute('data-seq'));
  const deadline = Date.now() + 10_000;
  while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(got).toHaveLength(1);
  expect(got[0]).toMatchObject({ topic, seq, data: { text: 'typed in the browser', n: 7 } });
  // The page is subscribed to the same topic: its own message shows up in its list as well.
  await page.locator(`#messages tbody tr[data-seq="${seq}"]`).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, `browser-demo-${encoding}-publish.png`) });
  await page.close();
});

test('the page loaded and ran without a script error', () => {
  expect(pageErrors).toEqual([]);
});
