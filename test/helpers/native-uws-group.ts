// Several uWebSockets.js Apps, each in its own worker thread, listening on one
// port with SO_REUSEPORT (as workgroups do), each answering any HTTP request
// with its own index, plus a client that asks "who answers me" from a chosen
// source address.
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { packageRoot } from '../../native-io/package-root';

const UWS_MODULE = path.join(packageRoot(), 'dist', 'native-io', 'uws.js');
const NATIVE_IO_MODULE = path.join(packageRoot(), 'dist', 'native-io', 'index.js');

// Worker bodies must be plain JS; this one loads uWS through dist/native-io/uws.js.
export const WORKER_BODY = `
const { parentPort, workerData } = require('node:worker_threads');
const { uws } = require(workerData.uwsModule).loadUws(false);
let listenSocket = null;
const app = uws.App().any('/*', (res) => { res.end('W' + workerData.index + ';'); });
parentPort.on('message', (cmd) => {
  if (cmd.op === 'listen') {
    app.listen(cmd.port, (ls) => {
      listenSocket = ls || null;
      parentPort.postMessage({ op: 'listen', port: ls ? uws.us_socket_local_port(ls) : -1 });
    });
  } else if (cmd.op === 'close') {
    if (listenSocket) uws.us_listen_socket_close(listenSocket);
    listenSocket = null;
    parentPort.postMessage({ op: 'close' });
  } else if (cmd.op === 'stop') {
    // Everything closed before the thread ends, or Node aborts the process.
    if (listenSocket) uws.us_listen_socket_close(listenSocket);
    listenSocket = null;
    app.close && app.close();
    parentPort.close();
  }
});
`;

function request<T>(worker: Worker, cmd: object, op: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { op: string }) => {
      if (m.op !== op) return;
      worker.off('message', onMessage);
      worker.off('error', reject);
      resolve(m as T);
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
    worker.postMessage(cmd);
  });
}

export class UwsGroup {
  private constructor(
    readonly port: number,
    readonly workers: Worker[],
  ) {}

  /** Starts `count` workers and makes them listen one after the other, so worker i joins the reuseport group i-th. */
  static async start(count: number): Promise<UwsGroup> {
    const workers: Worker[] = [];
    for (let index = 0; index < count; index++) {
      workers.push(new Worker(WORKER_BODY, { eval: true, workerData: { index, uwsModule: UWS_MODULE } }));
    }
    // uSockets sets SO_REUSEPORT only when given a port other than 0, so
    // take a free port from the kernel first and have every worker ask for it.
    const group = new UwsGroup(await freePort(), workers);
    try {
      for (let i = 0; i < count; i++) await group.listen(i);
    } catch (err) {
      await group.stop();
      throw err;
    }
    return group;
  }

  /** Makes worker `index` listen on the group's port (again, for a restarted workgroup). */
  async listen(index: number): Promise<void> {
    const r = await request<{ port: number }>(this.workers[index], { op: 'listen', port: this.port }, 'listen');
    if (r.port !== this.port) throw new Error(`worker ${index} could not listen on port ${this.port}`);
  }

  /** Closes worker `index`'s listening socket; the worker stays alive. */
  async close(index: number): Promise<void> {
    await request(this.workers[index], { op: 'close' }, 'close');
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once('exit', () => resolve());
            w.postMessage({ op: 'stop' });
          }),
      ),
    );
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '::', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The index of the worker that answers a connection from `sourceAddress`. */
export function whoAnswers(port: number, sourceAddress: string, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress: sourceAddress });
    let text = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${host}:${port} to ${sourceAddress}`)), 5000);
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: test\r\n\r\n'));
    socket.on('data', (chunk: string) => {
      text += chunk;
      const m = /W(\d+);/.exec(text);
      if (m) {
        clearTimeout(timer);
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

// The same group and client, in plain JS, for a child process in a network
// namespace of its own (unshare --net), where the test may give loopback as
// many IPv6 addresses as it likes without touching the machine's network.
const NETNS_CHILD = `
const { Worker } = require('node:worker_threads');
const net = require('node:net');
const cfg = JSON.parse(process.env.C10M_NETNS_CONFIG);
const io = require(cfg.nativeIo);
const PORT = 9000;
function request(w, cmd, op) {
  return new Promise((resolve, reject) => {
    const on = (m) => { if (m.op === op) { w.off('message', on); resolve(m); } };
    w.on('message', on);
    w.once('error', reject);
    w.postMessage(cmd);
  });
}
function who(localAddress) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '::1', port: PORT, localAddress });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write('GET / HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n'));
    socket.on('data', (chunk) => {
      text += chunk;
      const m = /W(\\d+);/.exec(text);
      if (m) { socket.destroy(); resolve(Number(m[1])); }
    });
    socket.on('error', reject);
  });
}
(async () => {
  const workers = [];
  for (let index = 0; index < cfg.workers; index++) {
    workers.push(new Worker(cfg.workerBody, { eval: true, workerData: { index, uwsModule: cfg.uwsModule } }));
  }
  try {
    for (const w of workers) {
      const r = await request(w, { op: 'listen', port: PORT }, 'listen');
      if (r.port !== PORT) throw new Error('a worker could not listen on ' + PORT);
    }
    const attached = io.attachIpHash(PORT, cfg.workers);
    const answers = {};
    for (const a of cfg.addresses) answers[a] = await Promise.all(Array.from({ length: cfg.perAddress }, () => who(a)));
    return { attached, answers };
  } finally {
    await Promise.all(workers.map((w) => new Promise((resolve) => { w.once('exit', resolve); w.postMessage({ op: 'stop' }); })));
  }
})().then(
  (value) => console.log(JSON.stringify({ value })),
  (err) => { console.log(JSON.stringify({ error: String(err && err.stack || err) })); process.exitCode = 1; });
`;

export interface NetnsAnswers {
  attached: { attached: boolean; sockets?: number };
  /** For each source address, the worker index of each connection. */
  answers: Record<string, number[]>;
}

/**
 * Runs `workers` uWS workers on [::]:9000 in a new network namespace whose
 * loopback also has `ipv6Addresses`, attaches the IP hash, and connects
 * `perAddress` times from each address. Needs root (unshare) and iproute2.
 */
export function ipv6AnswersInNetns(ipv6Addresses: string[], workers: number, perAddress: number): Promise<NetnsAnswers> {
  for (const a of ipv6Addresses) if (net.isIPv6(a) === false) throw new Error(`not an IPv6 address: ${a}`);
  const setup = ['ip link set lo up', ...ipv6Addresses.map((a) => `ip -6 addr add ${a}/128 dev lo nodad`)].join(' && ');
  const config = { nativeIo: NATIVE_IO_MODULE, uwsModule: UWS_MODULE, workerBody: WORKER_BODY, workers, perAddress, addresses: ipv6Addresses };
  const env = { ...process.env, C10M_NETNS_CONFIG: JSON.stringify(config), C10M_NETNS_SCRIPT: NETNS_CHILD };
  delete env.C10M_NATIVE_DISABLED;
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--net', '--', 'sh', '-c', `${setup} && exec "${process.execPath}" -e "$C10M_NETNS_SCRIPT"`], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(out.trim().split('\n').pop() ?? '') as { value?: NetnsAnswers; error?: string };
        if (r.value) return resolve(r.value);
        reject(new Error(`netns child failed: ${r.error}`));
      } catch {
        reject(new Error(`netns child exited (${status ?? signal}) without a result: ${out} ${err}`));
      }
    });
  });
}
