// Several uWebSockets.js Apps, each in its own worker thread, listening on one
// port with SO_REUSEPORT (as workgroups do), each answering any HTTP request
// with its own index, plus a client that asks "who answers me" from a chosen
// source address.
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

const UWS_MODULE = path.resolve(__dirname, '..', '..', 'dist', 'native-io', 'uws.js');

// Worker bodies must be plain JS; this one loads uWS through dist/native-io/uws.js.
const WORKER_BODY = `
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
  private constructor(readonly port: number, readonly workers: Worker[]) {}

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
