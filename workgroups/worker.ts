// Entry point of a workgroup thread. Control messages only (listening,
// drained, fatal); nothing on the message path goes through postMessage.
//
// A thread that ends while its uWS App holds open handles aborts the whole
// process (uv_loop_close with open handles). So every way out of this thread
// closes the App first: drain, an uncaught exception, and process.exit()
// (which runs the 'exit' listener below). Only a native crash or an OOM kill
// still takes the process down; see the concurrency notes in docs/CONCURRENCY.md.
import { parentPort, workerData } from 'node:worker_threads';
import type { ControlCommand, WorkgroupEvent, WorkgroupInit } from '../shm/workgroup-init';
import { workgroupLogger } from './log';
import { Workgroup } from './workgroup';

const init = workerData as WorkgroupInit;
const log = workgroupLogger(init.id, init.options.logLevel, init.options.logFormat, init.options.processIndex);
const port = parentPort;
if (port === null) throw new Error('workgroups/worker.js must run as a worker thread');

function post(event: WorkgroupEvent): void {
  port?.postMessage(event);
}

let workgroup: Workgroup | null = null;
let closed = false;
/** Every way out but a drain: sessions are told 1011 (reconnect; the server stays up) before the App closes. */
function closeOnce(): void {
  if (closed) return;
  closed = true;
  workgroup?.close(true);
}

process.on('exit', closeOnce);
process.on('uncaughtException', (err) => {
  log.fatal({ err }, 'workgroup failed');
  post({ type: 'fatal', id: init.id, error: err instanceof Error ? err.message : String(err) });
  closeOnce();
  setImmediate(() => process.exit(1));
});

try {
  workgroup = new Workgroup(init, log);
} catch (err) {
  post({ type: 'fatal', id: init.id, error: (err as Error).message });
  process.exit(1);
}
const wg = workgroup;
wg.listen(
  (boundPort) => {
    log.info({ port: boundPort, uwsNative: wg.uwsNative, restarts: init.restarts }, 'workgroup listening');
    post({ type: 'listening', id: init.id, port: boundPort, uwsNative: wg.uwsNative });
  },
  (error) => {
    post({ type: 'listen-failed', id: init.id, error });
    closeOnce();
    process.exit(1);
  },
  (accepting) => post({ type: 'accepting', id: init.id, accepting }),
);

port.on('message', (cmd: ControlCommand) => {
  if (cmd.type === 'crash') {
    wg.crash(cmd.how);
    return;
  }
  if (cmd.type === 'fail-commands') {
    wg.failCommands(cmd.count);
    return;
  }
  if (cmd.type === 'stall') {
    wg.stall(cmd.ms);
    return;
  }
  if (cmd.type === 'drain') {
    wg.drain(cmd.timeoutMs, (closedSessions) => {
      wg.close();
      closed = true;
      post({ type: 'drained', id: init.id, closedSessions });
      // Let the close callbacks run, then end the thread.
      setTimeout(() => process.exit(0), 20);
    });
  }
});
