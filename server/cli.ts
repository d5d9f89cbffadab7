// The `c10m` command line. Exit codes: 0 ok; 1 failure at run time (e.g.
// a port held, Redis not reachable within --redis-wait-seconds); 2 bad
// flags or config, including a Redis that refuses the credentials, is older
// than 7.0 or not the kind --redis-cluster says. Always one clear line,
// never a stack trace.
import { Command, CommanderError, Option } from 'commander';
import { UwsFallbackRefused } from '../native-io/uws';
import { loadAuth } from './auth-config';
import { availableParallelism } from 'node:os';
import { limitsReport } from '../native-io';
import { ConfigError, OPTIONS, envName, readConfigFile, resolveConfig, type Config } from './config';
import { startProcesses } from './node-admin';
import { planProcesses, type ProcessPlan } from './processes';
import { resolveLogFormat, serverLogger } from './log';
import { RedisStartError } from './redis-check';
import { startServer, type RunningServer } from './server';
import { packageVersion } from '../native-io/package-root';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function serveCommand(): Command {
  // One line per paragraph: commander wraps them to the terminal.
  const cmd = new Command('serve').description(
    [
      'Start a c10m node: WebSocket pub/sub on the public port, metrics and health on the admin port.',
      'Every option can also be set by its environment variable (shown in brackets) or a JSON config file; precedence: flag > environment > config file > default.',
      'Exit codes: 0 stopped cleanly; 1 could not start or failed while running (e.g. a port held, Redis not reachable within --redis-wait-seconds); 2 bad option or configuration (also when Redis refuses the credentials, is older than 7.0, or is not the kind --redis-cluster says).',
    ].join('\n\n'),
  );
  for (const spec of OPTIONS) {
    const flags = spec.kind === 'bool' ? `--${spec.flag}` : `--${spec.flag} <${spec.kind === 'int' ? 'n' : 'value'}>`;
    const opt = new Option(flags, `${spec.help} [${envName(spec.flag)}]`);
    if (spec.choices) opt.choices(spec.choices);
    if (spec.key !== 'adminToken' && spec.key !== 'jwtSecret') opt.default(spec.default(), spec.defaultHelp);
    cmd.addOption(opt);
  }
  cmd.option('--config <file>', 'JSON config file of option: value (camelCase keys or flag names) [C10M_CONFIG]');
  cmd.action(async (_opts, command: Command) => {
    // Only values given on the command line count as flags; commander's defaults are for --help.
    const flags: Partial<Record<keyof Config, unknown>> = {};
    for (const spec of OPTIONS) {
      if (command.getOptionValueSource(spec.key) === 'cli') flags[spec.key] = command.getOptionValue(spec.key);
    }
    const configFile = (command.getOptionValue('config') as string | undefined) ?? process.env.C10M_CONFIG;
    const config = resolveConfig(flags, process.env, configFile);
    // Key files and the like, checked before anything starts (a ConfigError: exit 2).
    loadAuth(config);
    const workgroupsGiven = flags.workgroups !== undefined || process.env[envName('workgroups')] !== undefined || (configFile !== undefined && readConfigFile(configFile).workgroups !== undefined);
    const plan = planProcesses(config, workgroupsGiven, descriptorLimit(), availableParallelism());
    await serve({ ...config, processes: plan.processes, workgroups: plan.workgroups }, plan);
  });
  return cmd;
}

/** The descriptors a node process can get: its hard RLIMIT_NOFILE (Node raises the soft one to it), or fs.nr_open when unlimited. */
function descriptorLimit(): number {
  const l = limitsReport();
  return Number.isFinite(l.nofileHard) ? l.nofileHard : (l.fsNrOpen ?? 1_048_576);
}

async function serve(config: Config, plan: ProcessPlan): Promise<void> {
  const log = serverLogger(config.logLevel, resolveLogFormat(config.logFormat));
  // Signals are handled from the first moment, so a SIGTERM during start-up still drains cleanly.
  let server: Pick<RunningServer, 'shutdown'> | null = null;
  let stopRequested: string | null = null;
  let signals = 0;
  // A signal before the node is up ends the wait for Redis at once (nothing has started yet).
  const starting = new AbortController();
  if (plan.arithmetic !== null && plan.processes === 1) log.info({ processes: 1, auto: plan.arithmetic }, `--processes auto: ${plan.arithmetic}`);
  const stop = (s: Pick<RunningServer, 'shutdown'>) =>
    s.shutdown().then(
      () => process.exit(EXIT_OK),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(EXIT_FAILURE);
      },
    );
  const onSignal = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(EXIT_FAILURE);
    }
    log.info({ signal }, 'signal received');
    if (server) stop(server);
    else {
      stopRequested = signal;
      starting.abort(new StopBeforeStart(signal));
    }
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    server = plan.processes > 1 ? await startProcesses(config, plan, log, { signal: starting.signal }) : await startServer(config, log, { signal: starting.signal });
  } catch (err) {
    if (err instanceof StopBeforeStart) {
      log.info({ signal: err.signal }, 'stopped before start');
      process.exit(EXIT_OK);
    }
    // The reason, once, on one line (stderr): not also as a log line on stdout.
    const reason = err instanceof UwsFallbackRefused ? `refusing to start: ${err.message}` : `could not start: ${(err as Error).message}`;
    process.stderr.write(`c10m: ${reason.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exit(err instanceof RedisStartError ? err.exitCode : EXIT_FAILURE);
  }
  // Each process is sized for its share of --max-sessions.
  for (const hook of serveStartHooks) hook({ ...config, maxSessions: Math.ceil(config.maxSessions / plan.processes) }, (msg) => log.warn(msg));
  if (stopRequested !== null) stop(server);
}

class StopBeforeStart extends Error {
  constructor(readonly signal: string) {
    super(`${signal} before the node started`);
  }
}

/** Checks run once `serve` is up (e.g. the descriptor-limit warning); each may warn. */
export const serveStartHooks: ((config: Config, warn: (message: string) => void) => void)[] = [];

/**
 * Other folders add their commands here (ops, bench); each is optional so the CLI works without it. `serve` leaves
 * the bench out: its modules (histograms with a WASM core, the load generator's addon, ws) were 4.7 MB of the server's
 * main-thread heap, for nothing.
 */
function registerOptional(program: Command, command: string | undefined): void {
  for (const [mod, fn] of [
    ['../sysctl/cli', 'registerOpsCommands'],
    ['../bench/cli', 'registerBenchCommands'],
  ] as const) {
    if (command === 'serve' && mod === '../bench/cli') continue;
    let loaded: Record<string, unknown>;
    try {
      loaded = require(mod);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && (err as Error).message.includes(mod.slice(3))) continue;
      throw err;
    }
    (loaded[fn] as (p: Command) => void)(program);
    if (typeof loaded.capacityWarning === 'function') {
      const warnFn = loaded.capacityWarning as (maxSessions: number) => string | null;
      serveStartHooks.push((config, warn) => {
        const w = warnFn(config.maxSessions);
        if (w) warn(w);
      });
    }
  }
}

/** command: the one to be run, when known (argv[2]); the program then registers only what it needs. */
export function buildProgram(command?: string): Command {
  const program = new Command('c10m').description('c10m: a real-time publish/subscribe server for millions of WebSocket sessions per node').version(packageVersion()).exitOverride();
  program.addCommand(serveCommand());
  registerOptional(program, command);
  // A usage error is one line: commander's message and where to look, never a stack.
  for (const c of [program, ...program.commands]) {
    c.exitOverride();
    c.configureOutput({
      outputError: (str, write) =>
        write(
          `c10m: ${str
            .trim()
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')} (see c10m ${c === program ? '' : c.name() + ' '}--help)\n`,
        ),
    });
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram(argv[2]);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message
      process.exit(err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? EXIT_OK : EXIT_USAGE);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`c10m: bad configuration: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    process.stderr.write(`c10m: ${(err as Error).message}\n`);
    process.exit(EXIT_FAILURE);
  }
}
