// SSE in a real browser (Debian's chromium, headless, playwright-core)
// behind a small HTTP proxy that refuses WebSocket upgrades: the SDK falls
// back to SSE, receives, publishes, and resumes with no loss and no
// duplicate after the proxy drops its stream; and a bare EventSource
// resumes by itself with Last-Event-ID after the same drop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { httpPublish } from './helpers/client';
import { UpgradeRefusingProxy } from './helpers/http-proxy';
import { startServer, type TestServer } from './helpers/server';

jest.setTimeout(60_000);

const CHROMIUM = '/usr/bin/chromium';
let server: TestServer;
let proxy: UpgradeRefusingProxy;
let context: BrowserContext;
let userDataDir: string;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does it)`);
  server = await startServer(['--workgroups', '2', '--sse-heartbeat-seconds', '1']);
  proxy = new UpgradeRefusingProxy(server.port);
  await proxy.listen();
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-chromium-sse-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  // Any page of the proxy's origin: the SDK and the streams are same-origin from there.
  await page.goto(`http://127.0.0.1:${proxy.port}/blank`);
});

afterAll(async () => {
  await context?.close();
  await proxy?.close();
  await server?.stop();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('the SDK falls back to SSE when the WebSocket upgrade is refused, receives, publishes, and resumes after the proxy drops its stream', async () => {
  const topic = '/browser/sse';
  await page.evaluate(
    async ({ url, topic }) => {
      // Not import(): the test is compiled to CommonJS, which would turn it into require().
      const load = new Function('u', 'return import(u)') as (u: string) => Promise<{
        connect: (url: string, o: unknown) => { on(e: string, l: (g: unknown) => void): void; subscribe(t: string, h: (m: { seq: number; data: unknown }) => void): { ready: Promise<unknown> } };
      }>;
      const sdk = await load('/sdk/c10m.js');
      const w = window as unknown as Record<string, unknown>;
      const got: [number, unknown][] = [];
      const gaps: unknown[] = [];
      w.got = got;
      w.gaps = gaps;
      const c = sdk.connect(url, { reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
      w.client = c;
      c.on('gap', (g: unknown) => gaps.push(g));
      await c.subscribe(topic, (m: { seq: number; data: unknown }) => got.push([m.seq, m.data])).ready;
    },
    { url: `ws://127.0.0.1:${proxy.port}`, topic },
  );
  expect(proxy.refusedUpgrades).toBeGreaterThanOrEqual(1);
  expect(proxy.sseRequests).toBeGreaterThanOrEqual(1);
  for (let i = 1; i <= 5; i++) await httpPublish(server.port, { topic, data: i });
  await page.waitForFunction(() => (window as unknown as { got: unknown[] }).got.length === 5, undefined, { timeout: 10_000 });
  const ack = await page.evaluate(async (topic) => (window as unknown as { client: { publish(t: string, d: unknown): Promise<{ seq: number }> } }).client.publish(topic, 'from the page'), topic);
  expect(ack.seq).toBe(6);
  await page.waitForFunction(() => (window as unknown as { got: unknown[] }).got.length === 6, undefined, { timeout: 10_000 });
  // The proxy drops the stream; messages published meanwhile are replayed on the SDK's SSE reconnect.
  expect(proxy.dropAll()).toBeGreaterThanOrEqual(1);
  for (let i = 7; i <= 20; i++) await httpPublish(server.port, { topic, data: i });
  await page.waitForFunction(() => (window as unknown as { got: unknown[] }).got.length >= 20, undefined, { timeout: 15_000 });
  const { got, gaps } = await page.evaluate(() => ({ got: (window as unknown as { got: [number, unknown][] }).got, gaps: (window as unknown as { gaps: unknown[] }).gaps }));
  expect(got.map(([seq]) => seq)).toEqual(range(1, 20));
  expect(got[5][1]).toBe('from the page');
  expect(gaps).toEqual([]);
  expect(pageErrors).toEqual([]);
});

test('a bare EventSource resumes by itself with Last-Event-ID after the proxy drops its stream', async () => {
  const topic = '/browser/es';
  await page.evaluate((topic) => {
    const w = window as unknown as Record<string, unknown>;
    const seen: number[] = [];
    w.esSeen = seen;
    w.esReady = 0;
    const es = new EventSource(`/v1/sse?topics=${topic}`);
    es.addEventListener('ready', () => (w.esReady = (w.esReady as number) + 1));
    es.onmessage = (ev) => seen.push(JSON.parse(ev.data).seq);
  }, topic);
  await page.waitForFunction(() => (window as unknown as { esReady: number }).esReady === 1, undefined, { timeout: 10_000 });
  for (let i = 1; i <= 5; i++) await httpPublish(server.port, { topic, data: i });
  await page.waitForFunction(() => (window as unknown as { esSeen: number[] }).esSeen.length === 5, undefined, { timeout: 10_000 });
  const before = proxy.lastEventIds.length;
  proxy.dropAll();
  for (let i = 6; i <= 12; i++) await httpPublish(server.port, { topic, data: i });
  // Chromium reconnects after its retry delay (3 s by default) and sends the last id it saw.
  await page.waitForFunction(() => (window as unknown as { esReady: number }).esReady === 2, undefined, { timeout: 20_000 });
  await page.waitForFunction(() => (window as unknown as { esSeen: number[] }).esSeen.length >= 12, undefined, { timeout: 10_000 });
  expect(proxy.lastEventIds.length).toBeGreaterThan(before);
  expect(await page.evaluate(() => (window as unknown as { esSeen: number[] }).esSeen)).toEqual(range(1, 12));
});
