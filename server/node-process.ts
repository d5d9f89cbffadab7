// One node process of `c10m serve --processes N` (started by
// server/processes.ts with child_process.fork): the ordinary node, its
// workgroups on the shared public port, without an admin port of its own.
// It talks to the top supervisor over the IPC channel only: its
// configuration comes in the first message; it says when it listens, sends
// its stats blocks and its own figures once a second (the top's /metrics
// and /jmx read those), drains when told, and ends when the top is gone.
import { memoryUsage } from 'node:process';
import { arenaStats } from '../native-io';
import { resolveLogFormat, serverLogger } from './log';
import { openDescriptors } from './figures';
import { startServer, type RunningServer } from './server';
import type { ChildReport, ChildStart, TopCommand } from './processes';

/** How often the process reports its figures to the top (the top's views are this fresh). */
const REPORT_INTERVAL_MS = 1000;

function send(msg: ChildReport): void {
  if (process.connected) process.send?.(msg);
}

async function run(start: ChildStart): Promise<void> {
  const { config, index } = start;
  const log = serverLogger(config.logLevel, resolveLogFormat(config.logFormat)).child({ process: index, pid: process.pid });
  let server: RunningServer | null = null;
  let stopping: Promise<void> | null = null;
  const stop = (why: string): Promise<void> => {
    if (stopping) return stopping;
    log.info({ why }, 'node process stopping');
    stopping = (server ? server.shutdown() : Promise.resolve()).then(() => process.exit(0));
    return stopping;
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // Ctrl-C reaches every process of the terminal's group: the top orders the drain.
  process.on('SIGINT', () => undefined);
  // The top is gone (killed, crashed): nobody would restart or observe this process, and its port
  // share would outlive the node. Drain and end.
  process.on('disconnect', () => void stop('the top supervisor is gone'));
  process.on('message', (m: TopCommand) => {
    if (m.type === 'drain') void stop('drain');
  });
  try {
    server = await startServer(config, log, { member: { index, totalSockets: start.totalSockets } });
  } catch (err) {
    send({ type: 'failed', error: (err as Error).message });
    process.exit(1);
  }
  const s = server;
  send({ type: 'listening', port: s.port, pid: process.pid, workgroups: s.supervisor.workgroups });
  const report = () => {
    const sup = s.supervisor;
    const m = memoryUsage();
    send({
      type: 'stats',
      blocks: sup.stats.map((b) => new Float64Array(b).slice()),
      restarts: Array.from({ length: sup.workgroups }, (_, id) => sup.restartsOf(id)),
      listening: sup.listeningCount(),
      down: sup.down().length,
      cpu: process.cpuUsage(),
      rss: m.rss,
      heapUsed: m.heapUsed,
      openDescriptors: openDescriptors(),
      arenaBytes: ((a) => a.hugetlbBytes + a.thpBytes + a.normalBytes + a.jsBytes)(arenaStats()),
      ipHashAttached: sup.ipHash?.attached ?? null,
    });
  };
  report();
  setInterval(report, REPORT_INTERVAL_MS).unref();
}

if (!process.send) {
  process.stderr.write('c10m: server/node-process.js is started by `c10m serve --processes N`, not by hand\n');
  process.exit(2);
}
// The IPC channel keeps the process alive until the top says what to run.
process.once('message', (m: ChildStart) => {
  if (m.type !== 'start') return;
  void run(m);
});
