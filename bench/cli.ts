// `c10m bench sub`, `c10m bench pub` and `c10m bench run <scenario>`,
// registered on the server's commander program (server/cli.ts). Every flag
// has an environment variable of the same stem (C10M_BENCH_...). Output: a
// JSON line per second and a final JSON line on stdout, progress on stderr.
import * as fs from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { parseSourceAddresses } from './addresses';
import { DEFAULT_SOURCE_ADDRESSES, type RunOptions } from './harness';
import { summarize } from './histogram';
import { Publisher, type PubTransport } from './pub';
import { markdown } from './report';
import { DEFAULT_RESULTS_DIR, SCENARIOS, runScenario, type Scenario } from './run';
import { PHASES } from './scenarios/cluster';
import { DEFAULTS as MILLION } from './scenarios/million';
import { SubscriberFleet } from './sub';
import { PEERS, type TargetKind } from './targets';
import { newJwtSecret } from './tokens';

function int(min: number, max: number) {
  return (text: string): number => {
    const v = Number(text.replace(/_/g, ''));
    if (!Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}.`);
    return v;
  };
}

function intList(min: number, max: number) {
  return (text: string): number[] => text.split(',').map((x) => int(min, max)(x.trim()));
}

function positive(text: string): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0) throw new InvalidArgumentError('expected a positive number.');
  return v;
}

function addresses(text: string): string[] {
  try {
    return parseSourceAddresses(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function opt(flags: string, help: string, stem: string): Option {
  return new Option(flags, `${help} [C10M_BENCH_${stem}]`).env(`C10M_BENCH_${stem}`);
}

function line(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

function subCommand(): Command {
  return new Command('sub')
    .description(
      'benchsub: open many sessions from loopback source addresses, subscribe each, and measure the end-to-end latency of every delivery from the timestamp in its frame (native epoll client).',
    )
    .addOption(opt('--url <url>', 'WebSocket URL of the server', 'URL').default('ws://127.0.0.1:8080/v1/ws?encoding=msgpack'))
    .addOption(opt('--connections <n>', 'sessions to open', 'CONNECTIONS').argParser(int(1, 10_000_000)).default(1000))
    .addOption(
      opt('--source-addresses <list>', 'source addresses, e.g. 127.0.1.1-127.0.1.16,127.0.2.1 (loopback only)', 'SOURCE_ADDRESSES')
        .argParser(addresses)
        .default(parseSourceAddresses(DEFAULT_SOURCE_ADDRESSES), DEFAULT_SOURCE_ADDRESSES),
    )
    .addOption(opt('--topics-per-session <n>', 'topics each session subscribes to', 'TOPICS_PER_SESSION').argParser(int(1, 1024)).default(1))
    .addOption(opt('--topics <n>', 'distinct topics (default: connections x topics-per-session, every session its own)', 'TOPICS').argParser(int(1, 100_000_000)))
    .addOption(opt('--topic-pattern <pattern>', 'topic name pattern; {n} is the topic number', 'TOPIC_PATTERN').default('/bench/{n}'))
    .addOption(opt('--duration <seconds>', 'seconds to measure once every session is ready', 'DURATION').argParser(positive).default(60))
    .addOption(opt('--processes <n>', 'benchsub processes to spread the sessions over (each holds at most ~19,900 sockets here)', 'PROCESSES').argParser(int(1, 1024)).default(1))
    .addOption(opt('--connect-rate <n>', 'sessions opened per second (0: as fast as --max-pending allows)', 'CONNECT_RATE').argParser(int(0, 10_000_000)).default(0))
    .addOption(opt('--max-pending <n>', 'handshakes in progress at once per process', 'MAX_PENDING').argParser(int(1, 1_000_000)).default(256))
    .addOption(opt('--connect-timeout <seconds>', 'seconds to wait for every session to be ready', 'CONNECT_TIMEOUT').argParser(positive).default(120))
    .addOption(opt('--engine <engine>', 'auto, native (epoll addon) or js (ws package, small counts)', 'ENGINE').choices(['auto', 'native', 'js']).default('auto'))
    .addOption(opt('--out <file>', 'write the final figures and the HDR histogram (compressed base64) to this JSON file', 'OUT'))
    .addOption(
      opt('--conflate <ms>', 'subscribe with "conflate": at most one message per this many ms per topic, the latest (10..60000; default: every message)', 'CONFLATE').argParser(int(10, 60_000)),
    )
    .action(async (o) => {
      const topicCount = o.topics ?? o.connections * o.topicsPerSession;
      const fleet = new SubscriberFleet({
        url: o.url,
        connections: o.connections,
        processes: o.processes,
        sourceAddresses: o.sourceAddresses,
        topicPattern: o.topicPattern,
        topicsPerSession: o.topicsPerSession,
        topicCount,
        connectRate: o.connectRate,
        maxPending: o.maxPending,
        engine: o.engine,
        tickMs: 250,
        conflateMs: o.conflate ?? 0,
      });
      const onSignal = () => {
        fleet.kill();
        process.exit(1);
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      await fleet.start();
      let lastReport = 0;
      await fleet.until(
        (s) => s.ready + s.failed >= o.connections,
        o.connectTimeout * 1000,
        (s) => {
          if (Date.now() - lastReport >= 1000) {
            lastReport = Date.now();
            process.stderr.write(`benchsub: ${s.ready}/${o.connections} ready, ${s.failed} failed, ${s.pending} pending\n`);
          }
        },
      );
      const ready = fleet.stats();
      line({ msg: 'benchsub ready', engine: fleet.engine, ready: ready.ready, failed: ready.failed, seconds: ready.allReadySeconds, firstError: ready.firstError });
      const start = Date.now();
      let last = ready.messages;
      fleet.takeInterval();
      while (Date.now() - start < o.duration * 1000) {
        await new Promise((r) => setTimeout(r, Math.min(1000, o.duration * 1000 - (Date.now() - start))));
        const s = fleet.stats();
        const h = summarize(fleet.takeInterval());
        line({ t: Math.round((Date.now() - start) / 100) / 10, connected: s.connected - s.closed, messages: s.messages, delivered: s.messages - last, p50Ms: h.p50Ms, p99Ms: h.p99Ms, maxMs: h.maxMs });
        last = s.messages;
      }
      const counts = await fleet.connectionCounts();
      await fleet.stop();
      const stats = fleet.stats();
      const latency = summarize(fleet.latency);
      const final = { msg: 'benchsub done', engine: fleet.engine, stats, latency, minPerSession: Math.min(...counts), maxPerSession: Math.max(...counts) };
      line(final);
      if (o.out) fs.writeFileSync(o.out, `${JSON.stringify({ ...final, histogram: hdr.encodeIntoCompressedBase64(fleet.latency) }, null, 2)}\n`);
      process.exit(stats.failed > 0 || stats.protocolErrors > 0 ? 1 : 0);
    });
}

function pubCommand(): Command {
  return new Command('pub')
    .description("benchpub: publish --rate messages/s of --size bytes round robin over --topics topics, each stamped with its creation time (microseconds) for the subscribers' latency.")
    .addOption(opt('--url <url>', 'server address (ws://host:port; the path is chosen by --transport)', 'PUB_URL').default('ws://127.0.0.1:8080'))
    .addOption(opt('--rate <n>', 'messages per second over all topics', 'RATE').argParser(positive).default(1000))
    .addOption(
      opt('--size <bytes>', 'payload bytes per message', 'SIZE')
        .argParser(int(0, 16 * 1024 * 1024))
        .default(512),
    )
    .addOption(opt('--topics <n>', 'topics to publish to, round robin', 'PUB_TOPICS').argParser(int(1, 100_000_000)).default(1000))
    .addOption(opt('--topic-pattern <pattern>', 'topic name pattern; {n} is the topic number', 'TOPIC_PATTERN').default('/bench/{n}'))
    .addOption(
      opt('--transport <transport>', 'ws (pub commands over WebSocket, msgpack), http (POST /v1/publish) or socketio (the socket.io peer)', 'TRANSPORT')
        .choices(['ws', 'http', 'socketio'])
        .default('ws'),
    )
    .addOption(opt('--connections <n>', 'publisher connections (ws: sockets; http: parallel requests)', 'PUB_CONNECTIONS').argParser(int(1, 10000)).default(1))
    .addOption(opt('--duration <seconds>', 'seconds to publish', 'PUB_DURATION').argParser(positive).default(60))
    .addOption(opt('--count <n>', 'stop after this many messages (0: no limit)', 'COUNT').argParser(int(0, Number.MAX_SAFE_INTEGER)).default(0))
    .addOption(
      opt('--source-address <address>', 'loopback source address of the publisher', 'PUB_SOURCE')
        .argParser((t: string) => addresses(t)[0])
        .default('127.0.0.1'),
    )
    .addOption(opt('--ack', 'ws only: ask for an ack of every publish; reports acked messages/s and the send-to-ack latency', 'ACK'))
    .action(async (o, cmd: Command) => {
      if (o.ack && o.transport !== 'ws') cmd.error('c10m bench pub: --ack needs --transport ws', { exitCode: 2 });
      const pub = new Publisher({
        url: o.url,
        transport: o.transport as PubTransport,
        connections: o.connections,
        size: o.size,
        topicPattern: o.topicPattern,
        topicCount: o.topics,
        schedule: [{ atSeconds: 0, rate: o.rate }],
        durationSeconds: o.duration,
        maxMessages: o.count,
        sourceAddress: o.sourceAddress,
        tickMs: 1000,
        ack: o.ack === true,
      });
      await pub.start();
      const started = Date.now();
      pub.go();
      let last = 0;
      const timer = setInterval(() => {
        line({
          t: Math.round((Date.now() - started) / 100) / 10,
          published: pub.stats.published,
          perSec: pub.stats.published - last,
          errors: pub.stats.errors,
          ...(o.ack ? { acked: pub.stats.acked } : {}),
        });
        last = pub.stats.published;
      }, 1000);
      const final = await pub.done;
      clearInterval(timer);
      const seconds = (Date.now() - started) / 1000;
      line({
        msg: 'benchpub done',
        ...final,
        seconds,
        perSec: Math.round(final.published / seconds),
        ...(o.ack ? { ackedPerSec: final.ackSeconds > 0 ? Math.round(final.acked / final.ackSeconds) : 0 } : {}),
      });
      process.exit(final.errors > 0 ? 1 : 0);
    });
}

function runCommand(): Command {
  return new Command('run')
    .description(`run a benchmark scenario (${SCENARIOS.join(', ')}) against a c10m server it starts (or --url) and the peers, and write bench/results/<scenario>-<date>.{json,md,svg}`)
    .argument('<scenario>', SCENARIOS.join(' | '))
    .addOption(opt('--url <url>', 'target a running c10m at ws://host:port instead of starting one (peers are still started)', 'RUN_URL'))
    .addOption(opt('--server-pid <pid>', "with --url: the server's pid, for its RSS and CPU figures", 'SERVER_PID').argParser(int(1, 2 ** 31)))
    .addOption(
      opt('--workgroups <list>', 'workgroups of the c10m server started; a list (1,2) runs c10m once per count, in the same run as the peers', 'WORKGROUPS')
        .argParser(intList(1, 256))
        .default([1], '1'),
    )
    .addOption(opt('--cache-messages <list>', "c10m --cache-messages; a list (0,1000) runs c10m once per value (default: the server's default)", 'CACHE_MESSAGES').argParser(intList(0, 10_000_000)))
    .addOption(opt('--serve-args <flags>', 'more `c10m serve` flags for every c10m target, e.g. "--ring-bytes 1048576"', 'SERVE_ARGS'))
    .addOption(opt('--server-node-args <flags>', 'Node flags for every server process started (c10m and peers), e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"', 'SERVER_NODE_ARGS'))
    .addOption(opt('--pub-connections <n>', 'fanout, reference-scaled: publisher connections (several spread the publishes over the workgroups; default 1)', 'PUB_CONNECTIONS').argParser(int(1, 1000)))
    .addOption(
      opt('--ramp-factor <x>', "fanout: each step publishes this many times the previous step's rate (default 2)", 'RAMP_FACTOR').argParser((t: string) => {
        const v = Number(t);
        if (!Number.isFinite(v) || v <= 1 || v > 16) throw new InvalidArgumentError('expected a number above 1 and at most 16.');
        return v;
      }),
    )
    .addOption(opt('--connections <n>', 'sessions (default: per scenario, 19,000 for one server process)', 'CONNECTIONS').argParser(int(1, 10_000_000)))
    .addOption(
      opt('--processes <n>', 'benchsub processes (million: the server processes, a number or auto, its default; benchsub processes follow from --sessions)', 'PROCESSES')
        .argParser((t: string) => (t === 'auto' ? 0 : int(1, 1024)(t)))
        .default(1),
    )
    .addOption(opt('--sessions <n>', `million: sessions held (default ${MILLION.sessions.toLocaleString('en-US')})`, 'SESSIONS').argParser(int(20, 10_000_000)))
    .addOption(opt('--hold-seconds <n>', `million: seconds of the reference load (each topic once a minute; default ${MILLION.holdSeconds})`, 'HOLD_SECONDS').argParser(positive))
    .addOption(opt('--message-bytes <n>', `million: payload bytes (default ${MILLION.messageBytes})`, 'MESSAGE_BYTES').argParser(int(0, 1024 * 1024)))
    .addOption(opt('--ramp-rate <n>', `million: connects per second the fleet aims at (0: as fast as --max-pending allows; default ${MILLION.rampRate})`, 'RAMP_RATE').argParser(int(0, 10_000_000)))
    .addOption(
      opt(
        '--sample-sessions <n>',
        `million: real SDK sessions among the N, in one process, for the no-loss proof (default ${MILLION.sampleSessions}; at most a tenth of N)`,
        'SAMPLE_SESSIONS',
      ).argParser(int(0, 100_000)),
    )
    .addOption(
      opt('--source-addresses <list>', 'loopback source addresses of benchsub', 'SOURCE_ADDRESSES')
        .argParser(addresses)
        .default(parseSourceAddresses(DEFAULT_SOURCE_ADDRESSES), DEFAULT_SOURCE_ADDRESSES),
    )
    .addOption(opt('--duration <seconds>', 'seconds to publish (reference-scaled)', 'DURATION').argParser(positive))
    .addOption(
      opt('--warmup <seconds>', 'reference-scaled: seconds of publishing before the latency table starts (counted and checked all the same; default 5)', 'WARMUP').argParser((t: string) => {
        const v = Number(t);
        if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError('expected seconds >= 0.');
        return v;
      }),
    )
    .addOption(opt('--rate <n>', 'messages per second (reference-scaled: default one per session per second; fanout: the first step)', 'RATE').argParser(positive))
    .addOption(opt('--size <bytes>', 'payload bytes', 'SIZE').argParser(int(0, 1024 * 1024)))
    .addOption(opt('--topics <n>', 'distinct topics', 'TOPICS').argParser(int(1, 100_000_000)))
    .addOption(opt('--step-seconds <n>', 'fanout, cluster (saturation): seconds per rate step', 'STEP_SECONDS').argParser(positive))
    .addOption(
      opt('--rates <list>', 'cluster: publish rates of the Redis saturation steps, e.g. 10000,25000,50000 (default 10000,25000,50000,75000,100000)', 'RATES').argParser(intList(1, 10_000_000)),
    )
    .addOption(
      opt('--phases <list>', `cluster: the parts to run (${PHASES.join(',')}; default all)`, 'PHASES').argParser((t: string) => {
        const list = t
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
        for (const p of list) if (!(PHASES as readonly string[]).includes(p)) throw new InvalidArgumentError(`unknown phase ${p}; expected ${PHASES.join(', ')}`);
        if (list.length === 0) throw new InvalidArgumentError(`expected one or more of ${PHASES.join(', ')}`);
        return list;
      }),
    )
    .addOption(opt('--steps <n>', 'fanout: rate steps, each doubling the rate', 'STEPS').argParser(int(1, 40)))
    .addOption(
      opt(
        '--burst <n>',
        'fanout: instead of the ramp, n publishes sent as fast as --pub-connections (default 4 here) pipelined connections take them, timed until every subscriber has every message',
        'BURST',
      ).argParser(int(1, 10_000_000)),
    )
    .addOption(opt('--bursts <n>', 'fanout --burst: bursts in a row on the same sessions, the median reported (default 3)', 'BURSTS').argParser(int(1, 100)))
    .addOption(opt('--sizes <list>', 'idle-memory: session counts to measure at, e.g. 1000,5000,19000', 'SIZES').argParser((t: string) => t.split(',').map((x) => int(1, 10_000_000)(x.trim()))))
    .addOption(opt('--max-pending <n>', 'handshakes in progress at once per benchsub process', 'MAX_PENDING').argParser(int(1, 1_000_000)))
    .addOption(
      opt('--idle-seconds <early,late>', 'idle-memory: the two plain readings after the last burst, seconds after it (default 5,30; a forced-GC reading follows)', 'IDLE_SECONDS').argParser(
        (t: string) => {
          const v = t.split(',').map((x) => positive(x.trim()));
          if (v.length !== 2 || v[0] > v[1]) throw new InvalidArgumentError('expected two numbers of seconds, the first not above the second, e.g. 5,30');
          return v;
        },
      ),
    )
    .addOption(opt('--settle-seconds <n>', 'idle-memory: seconds to let the server settle before each RSS reading (default 3)', 'SETTLE_SECONDS').argParser(positive))
    .addOption(opt('--peers <list>', `peers to run in the same harness (${PEERS.join(',')}, or none); reference-scaled runs them only when given`, 'PEERS').default(PEERS.join(',')))
    .addOption(opt('--results-dir <dir>', 'where to write the results', 'RESULTS_DIR').default(DEFAULT_RESULTS_DIR))
    .addOption(opt('--engine <engine>', 'benchsub engine: auto, native or js', 'ENGINE').choices(['auto', 'native', 'js']).default('auto'))
    .addOption(
      opt('--connect-timeout <seconds>', 'seconds to wait for every session to be ready (reconnect-storm: also for every session to be back)', 'CONNECT_TIMEOUT').argParser(positive).default(120),
    )
    .addOption(
      opt(
        '--auth <list>',
        'c10m --auth: none, jwt (every session and the publisher present their own HS256 token, minted by the bench), or a list (none,jwt) that runs c10m once per mode, jwt as a ratio to none',
        'AUTH',
      ).argParser((t: string) => {
        const list = [...new Set(t.split(',').map((x) => x.trim()))];
        for (const a of list) if (a !== 'none' && a !== 'jwt') throw new InvalidArgumentError(`unknown mode ${a}; expected none, jwt or none,jwt`);
        return list;
      }),
    )
    .addOption(
      opt('--jwt-secret <secret>', 'with --auth jwt: the HS256 secret of the node and the tokens (at least 32 characters; default: random per run)', 'JWT_SECRET').argParser((t: string) => {
        if (t.length < 32) throw new InvalidArgumentError('expected at least 32 characters.');
        return t;
      }),
    )
    .addOption(
      opt(
        '--admission-rate <list>',
        'c10m --admission-rate (new sessions/s the node admits; 0: off); a list (2000,0) runs c10m once per rate, each as a ratio to 0 (reconnect-storm default: 2000,0)',
        'ADMISSION_RATE',
      ).argParser(intList(0, 10_000_000)),
    )
    .addOption(opt('--restart-signal <signal>', 'reconnect-storm: how the node is stopped before it is started again on its port', 'RESTART_SIGNAL').choices(['SIGKILL', 'SIGTERM']).default('SIGKILL'))
    .addOption(
      opt(
        '--ping-interval-ms <ms>',
        "reconnect-storm: each session pings this often (and once when ready), as the SDK does (its default 25000), and spreads its reconnects over the reply's reconnectWindowMs; 0: no pings, the crowd comes back on the backoff alone",
        'PING_INTERVAL_MS',
      )
        .argParser(int(0, 3_600_000))
        .default(10_000),
    )
    .addOption(opt('--gc-readings', "reference-scaled: the server's memory per session read after a forced GC in every isolate (the server runs with --inspect on loopback)", 'GC_READINGS'))
    .option('--no-progress', 'no progress bar')
    .action(async (scenario: string, o, cmd: Command) => {
      if (!(SCENARIOS as readonly string[]).includes(scenario)) cmd.error(`c10m bench run: unknown scenario ${scenario}; expected one of ${SCENARIOS.join(', ')}`, { exitCode: 2 });
      // reference-scaled takes minutes per target: the peers only when asked for (--peers or its variable).
      const defaultPeers = scenario === 'reference-scaled' && cmd.getOptionValueSource('peers') === 'default';
      const peers = defaultPeers || o.peers === 'none' || o.peers === '' ? [] : (o.peers as string).split(',').map((p) => p.trim());
      for (const p of peers) if (!PEERS.includes(p as TargetKind)) cmd.error(`c10m bench run: unknown peer ${p}; expected ${PEERS.join(', ')} or none`, { exitCode: 2 });
      const workgroupsList = [...new Set(o.workgroups as number[])];
      const cacheMessagesList = o.cacheMessages ? [...new Set(o.cacheMessages as number[])] : null;
      if (scenario === 'cluster') {
        if (o.url) cmd.error('c10m bench run: cluster starts its own nodes and Redis: --url does not apply', { exitCode: 2 });
        if (cmd.getOptionValueSource('peers') !== 'default' && peers.length > 0) cmd.error('c10m bench run: cluster runs no peers: leave --peers out', { exitCode: 2 });
        if (workgroupsList.length > 1 || (cacheMessagesList?.length ?? 0) > 1)
          cmd.error('c10m bench run: cluster: --workgroups and --cache-messages take one value (every node gets it)', { exitCode: 2 });
      } else if (o.rates || o.phases) cmd.error('c10m bench run: --rates and --phases are options of the cluster scenario', { exitCode: 2 });
      if (o.url && (workgroupsList.length > 1 || cacheMessagesList || o.auth || o.admissionRate || o.gcReadings))
        cmd.error('c10m bench run: --url targets one running server: --workgroups, --cache-messages, --auth, --admission-rate and --gc-readings need servers the run starts', { exitCode: 2 });
      if (scenario === 'cluster' && (o.auth || o.admissionRate)) cmd.error('c10m bench run: cluster: --auth and --admission-rate are not options of the cluster scenario', { exitCode: 2 });
      if (o.gcReadings && scenario !== 'reference-scaled') cmd.error('c10m bench run: --gc-readings is an option of reference-scaled', { exitCode: 2 });
      if (scenario !== 'million' && o.processes === 0) cmd.error('c10m bench run: --processes auto is for million (its server processes)', { exitCode: 2 });
      if (scenario === 'million' && o.url) cmd.error('c10m bench run: million starts its own node and Redis: --url does not apply', { exitCode: 2 });
      const sessions = (o.sessions as number | undefined) ?? MILLION.sessions;
      const given = (name: string) => cmd.getOptionValueSource(name) !== 'default' && cmd.getOptionValueSource(name) !== undefined;
      const million =
        scenario === 'million'
          ? {
              sessions,
              holdSeconds: o.holdSeconds ?? MILLION.holdSeconds,
              messageBytes: o.messageBytes ?? o.size ?? MILLION.messageBytes,
              rampRate: o.rampRate ?? MILLION.rampRate,
              serverProcesses: given('processes') && o.processes !== 0 ? (o.processes as number) : ('auto' as const),
              sampleSessions: o.sampleSessions ?? MILLION.sampleSessions,
              // Pings at a million sessions are a load of their own: only when asked for.
              pingIntervalMs: given('pingIntervalMs') ? (o.pingIntervalMs as number) : 0,
              // The ramp at its rate, four times over, and three minutes more.
              connectTimeoutSeconds: given('connectTimeout') ? (o.connectTimeout as number) : Math.ceil((sessions / Math.max(1000, o.rampRate ?? MILLION.rampRate)) * 4 + 180),
            }
          : null;
      const options: RunOptions = {
        url: o.url ?? null,
        serverPid: o.serverPid ?? null,
        workgroups: workgroupsList[0],
        workgroupsList,
        cacheMessagesList,
        serveArgs: o.serveArgs ? (o.serveArgs as string).split(/\s+/).filter(Boolean) : [],
        serverNodeArgs: o.serverNodeArgs ? (o.serverNodeArgs as string).split(/\s+/).filter(Boolean) : [],
        pubConnections: o.pubConnections ?? null,
        rampFactor: o.rampFactor ?? null,
        connections: o.connections ?? null,
        processes: o.processes,
        sourceAddresses: o.sourceAddresses,
        durationSeconds: o.duration ?? null,
        warmupSeconds: o.warmup ?? null,
        rate: o.rate ?? null,
        size: o.size ?? null,
        topics: o.topics ?? null,
        stepSeconds: o.stepSeconds ?? null,
        steps: o.steps ?? null,
        burst: o.burst ?? null,
        bursts: o.bursts ?? null,
        sizes: o.sizes ?? null,
        settleSeconds: o.settleSeconds ?? null,
        idleSeconds: o.idleSeconds ?? null,
        rates: o.rates ?? null,
        phases: o.phases ?? null,
        maxPending: o.maxPending ?? null,
        peers: peers as TargetKind[],
        resultsDir: o.resultsDir,
        progress: o.progress !== false,
        engine: o.engine,
        connectTimeoutSeconds: o.connectTimeout,
        authList: o.auth ?? null,
        admissionRates: o.admissionRate ? [...new Set(o.admissionRate as number[])] : null,
        admissionRate: 0,
        restartSignal: o.restartSignal,
        pingIntervalMs: o.pingIntervalMs,
        gcReadings: o.gcReadings === true,
        jwtSecret: o.jwtSecret ?? newJwtSecret(),
        million,
      };
      const { result, files } = await runScenario(scenario as Scenario, options);
      process.stdout.write(markdown(result));
      line({ msg: 'bench run done', scenario, files, checksFailed: result.checks.filter((c) => !c.ok).length });
      process.exit(result.checks.every((c) => c.ok) ? 0 : 1);
    });
}

export function registerBenchCommands(program: Command): void {
  const bench = new Command('bench').description('benchmarks: benchsub (sub), benchpub (pub) and scenarios (run); see bench/README.md');
  bench.addCommand(subCommand());
  bench.addCommand(pubCommand());
  bench.addCommand(runCommand());
  for (const c of bench.commands) c.exitOverride();
  bench.exitOverride();
  program.addCommand(bench);
}
