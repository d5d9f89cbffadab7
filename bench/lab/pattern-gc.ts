// Where the per-message cost of a node holding many wildcard patterns goes
// (bench/lab/pattern-cost.ts): the same load as there (one workgroup,
// --messages publishes over 1,000 topics, one exact subscriber of every
// topic) against a server run with node --trace-gc, once per --patterns
// count, counting the collections and their pause times during the
// publishes. The message path does the same O(1) work whatever the count;
// what grows is the heap the collector walks.
//
//   npm run lab:build && flock /tmp/bench.lock node dist-lab/bench/lab/pattern-gc.js [--patterns 0,100000] [--messages 200000]
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import WebSocket from 'ws';
import { ROOT } from '../paths';
import { arg, refuseUnknown } from './args';

refuseUnknown(['patterns', 'messages']);
const counts = arg('patterns', '0,100000').split(',').filter(Boolean).map(Number);
const messages = Number(arg('messages', '200000'));

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function request(ws: WebSocket, cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const onMessage = (data: Buffer): void => {
      const m = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
      if (m.id !== cmd.id) return;
      ws.off('message', onMessage);
      resolve(m);
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify(cmd));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function measure(patterns: number): Promise<Record<string, number>> {
  const args = ['--trace-gc', path.join(ROOT, 'bin', 'c10m.js'), 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--workgroups', '1'];
  args.push('--max-patterns', '200000', '--max-patterns-per-session', '1000', '--max-commands-per-second', '0', '--max-bytes-per-second', '0');
  const srv = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let port = 0;
  srv.stdout.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    const m = /"msg":"c10m listening".*?"port":(\d+)/.exec(out) ?? /"port":(\d+).*?"msg":"c10m listening"/.exec(out);
    if (port === 0 && m !== null) port = Number(m[1]);
  });
  try {
    const deadline = Date.now() + 30_000;
    while (port === 0 && Date.now() < deadline) await sleep(50);
    if (port === 0) throw new Error('the server did not start');
    const url = `ws://127.0.0.1:${port}/v1/ws`;
    const holders: WebSocket[] = [];
    for (let s = 0; s * 1000 < patterns; s++) {
      const ws = await open(url);
      holders.push(ws);
      const list: string[] = [];
      for (let j = 0; j < 1000 && s * 1000 + j < patterns; j++) list.push(j % 2 === 0 ? `/idle/${s}/${j}/*` : `/t/x${s}-${j}/>`);
      await request(ws, { id: 1, op: 'sub', topics: list });
    }
    const sub = await open(url);
    await request(sub, { id: 2, op: 'sub', topics: Array.from({ length: 1000 }, (_, k) => `/t/${k}`) });
    let got = 0;
    sub.on('message', () => got++);
    const pub = await open(url);
    const mark = out.length;
    for (let i = 0; i < messages;) {
      for (let k = 0; k < 500 && i < messages; k++, i++) pub.send(`{"id":0,"op":"pub","topic":"/t/${i % 1000}","data":"${'x'.repeat(60)}"}`);
      while (pub.bufferedAmount > 256 * 1024) await sleep(1);
      await new Promise((r) => setImmediate(r));
    }
    while (got < messages) await sleep(5);
    const lines = out.slice(mark).split('\n');
    const pauses = (re: RegExp): number[] => lines.filter((l) => re.test(l)).map((l) => Number(/, ([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? 0));
    const scavenges = pauses(/Scavenge/);
    const marks = pauses(/Mark-Compact|Mark-sweep/i);
    for (const ws of [...holders, sub, pub]) ws.terminate();
    const sum = (xs: number[]): number => Math.round(xs.reduce((a, b) => a + b, 0));
    return {
      patterns,
      scavenges: scavenges.length,
      scavengeMs: sum(scavenges),
      markCompacts: marks.length,
      markCompactMs: sum(marks),
      gcMicrosPerMessage: Math.round(((sum(scavenges) + sum(marks)) * 1000 * 100) / messages) / 100,
    };
  } finally {
    srv.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const rows = [];
  for (const n of counts) rows.push(await measure(n));
  process.stdout.write(`pattern-gc: ${messages} publishes, 1 workgroup\n`);
  for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
