// The dashboard in a real headless Chromium (Debian's, driven by
// playwright-core): the session count it shows rises as clients connect,
// its charts render from uPlot served by the admin port (no other origin is
// contacted), and with an admin token the page sends it to /jmx.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page, type Request } from 'playwright-core';
import { connect, type TestClient } from './helpers/client';
import { ROOT, startServer, type TestServer } from './helpers/server';

const ARTIFACTS = path.join(ROOT, 'test-artifacts');

async function launch(): Promise<{ context: BrowserContext; page: Page; close(): Promise<void> }> {
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'c10m-dashboard-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 1100 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Waits until the page's session tile shows n. */
async function waitForSessions(page: Page, n: number, timeoutMs = 10_000): Promise<void> {
  await page.waitForFunction((want) => document.getElementById('sessions')?.textContent === String(want), n, { timeout: timeoutMs, polling: 100 });
}

describe('dashboard', () => {
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launch>>;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    server = await startServer(['--workgroups', '1']);
    browser = await launch();
  }, 30_000);
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await browser?.close();
    await server?.stop();
  });

  test('shows the session count rising as clients connect, with charts drawn by uPlot from the admin port', async () => {
    const { page } = browser;
    const origins = new Set<string>();
    const pageErrors: string[] = [];
    page.on('request', (r: Request) => origins.add(new URL(r.url()).origin));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const res = await page.goto(server.adminUrl('/dashboard'));
    expect(res?.status()).toBe(200);
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'live', undefined, { timeout: 10_000 });
    await waitForSessions(page, 0);
    // uPlot loaded from /dashboard/uplot.min.js and drew the six charts.
    expect(await page.evaluate(() => typeof (window as unknown as { uPlot?: unknown }).uPlot)).toBe('function');
    expect(await page.locator('.uplot canvas').count()).toBe(6);

    for (let i = 0; i < 5; i++) clients.push(await connect(server.url(), 'json'));
    await waitForSessions(page, 5);
    const pub = clients[0];
    await pub.sub(['/dashboard/t']);
    for (let i = 0; i < 50; i++) await pub.pub('/dashboard/t', { i });
    for (let i = 0; i < 7; i++) clients.push(await connect(server.url(), 'msgpack'));
    await waitForSessions(page, 12);
    // The per-workgroup table follows the same figures.
    const row = await page.locator('#workgroup-table tbody tr').first().locator('td').allTextContents();
    expect(row[0]).toBe('0');
    expect(row[2]).toBe('12');
    // The engine tile names the memory engine (the Redis engine's line is in engine-observability.test.ts).
    expect(await page.locator('#engine').textContent()).toBe('memory');
    expect(await page.locator('#redis-tile').isHidden()).toBe(true);
    // Let a few more points reach the charts, then keep a picture of the page.
    await page.waitForTimeout(2500);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    await Promise.all(clients.splice(0, 4).map((c) => c.close()));
    await waitForSessions(page, 8);
    expect([...origins]).toEqual([`http://127.0.0.1:${server.adminPort}`]);
    expect(pageErrors).toEqual([]);
  }, 60_000);
});

describe('dashboard with an admin token', () => {
  const TOKEN = 's3cret';
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launch>>;
  const clients: TestClient[] = [];
  const jmxAuthorization: (string | undefined)[] = [];
  const pageFileAuthorization: (string | undefined)[] = [];

  beforeAll(async () => {
    server = await startServer(['--workgroups', '1', '--admin-token', TOKEN]);
    browser = await launch();
    // The page's own files are open routes (a browser cannot put a bearer
    // token on a navigation); /jmx gets only what the page's script sends.
    browser.page.on('request', (r: Request) => {
      const path = new URL(r.url()).pathname;
      if (path === '/jmx') jmxAuthorization.push(r.headers().authorization);
      else pageFileAuthorization.push(r.headers().authorization);
    });
  }, 30_000);
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await browser?.close();
    await server?.stop();
  });

  test('without a token the page asks for one; entered in the form, it goes to /jmx as a bearer token', async () => {
    const { page } = browser;
    await page.goto(server.adminUrl('/dashboard'));
    await page.waitForSelector('#token-form:not([hidden])', { timeout: 10_000 });
    expect(await page.locator('#status').textContent()).toBe('this admin port needs a token');
    await page.fill('#token-input', 'wrong');
    await page.click('#token-form button');
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'the admin token was refused', undefined, { timeout: 10_000 });
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button');
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'live', undefined, { timeout: 10_000 });
    expect(jmxAuthorization).toContain(`Bearer ${TOKEN}`);
    expect(jmxAuthorization).toContain('Bearer wrong');
    // The page and its scripts loaded with no token at all.
    expect(pageFileAuthorization.length).toBeGreaterThanOrEqual(5);
    expect(pageFileAuthorization.filter((a) => a !== undefined)).toEqual([]);
  }, 30_000);

  test('a token in the URL fragment is used, then removed from the address bar; the count rises', async () => {
    const { page } = browser;
    jmxAuthorization.length = 0;
    await page.evaluate(() => sessionStorage.clear());
    await page.goto('about:blank'); // a fresh load, not a same-document fragment change
    await page.goto(server.adminUrl(`/dashboard#token=${TOKEN}`));
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'live', undefined, { timeout: 10_000 });
    expect(page.url()).toBe(server.adminUrl('/dashboard'));
    await waitForSessions(page, 0);
    for (let i = 0; i < 3; i++) clients.push(await connect(server.url(), 'json'));
    await waitForSessions(page, 3);
    expect(jmxAuthorization.length).toBeGreaterThan(0);
    expect(new Set(jmxAuthorization)).toEqual(new Set([`Bearer ${TOKEN}`]));
  }, 30_000);
});
