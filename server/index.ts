// The package's main module (`require('c10m')`): run a c10m node from your
// own program, as `c10m serve` does from the command line.
//
//   const { startServer, resolveConfig, serverLogger } = require('c10m');
//   const config = resolveConfig({ port: 8080 }, process.env, undefined);
//   const node = await startServer(config, serverLogger(config.logLevel));
//   // ...
//   await node.shutdown(); // drains: sessions are told to reconnect (1001)
//
// The client SDK is `c10m/sdk` (and `c10m/sdk/http-publisher`).
export { startServer, type RunningServer } from './server';
export { resolveConfig, ConfigError, OPTIONS, type Config } from './config';
export { serverLogger, type Logger } from './log';
