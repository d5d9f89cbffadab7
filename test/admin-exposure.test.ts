// The admin port off loopback: refused without a token unless --admin-public
// says it is intended (then a loud warning), and the token compared in
// constant time (digests of both, whatever their lengths). The /debug/*
// fault-injection routes exist only with --debug-routes, and never on a
// non-loopback admin host.
import { ConfigError, isLoopbackHost, resolveConfig } from '../server/config';
import { runCli, startServer, type TestServer } from './helpers/server';

let server: TestServer | null = null;
afterEach(async () => {
  await server?.stop();
  server = null;
});

describe('which admin hosts are loopback', () => {
  test.each(['127.0.0.1', '127.1.2.3', '127.255.255.254', 'localhost', 'LOCALHOST', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])('%s needs nothing', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
    expect(resolveConfig({ adminHost: host }, {}, undefined).adminHost).toBe(host);
  });
  test.each(['0.0.0.0', '::', '[::]', '10.0.0.5', '192.168.1.10', '128.0.0.1', '1127.0.0.1', 'example.com', 'localhost.example.com'])('%s needs a token or --admin-public', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
    expect(() => resolveConfig({ adminHost: host }, {}, undefined)).toThrow(ConfigError);
    expect(resolveConfig({ adminHost: host, adminToken: 't' }, {}, undefined).adminToken).toBe('t');
    expect(resolveConfig({ adminHost: host, adminPublic: true }, {}, undefined).adminPublic).toBe(true);
    // Every source of the flag: environment and config key.
    expect(resolveConfig({ adminHost: host }, { C10M_ADMIN_PUBLIC: '1' }, undefined).adminPublic).toBe(true);
  });
});

describe('c10m serve with a public admin host', () => {
  test('--admin-host 0.0.0.0 without --admin-token: refused, exit code 2, one clear line', async () => {
    const r = await runCli(['serve', '--port', '0', '--admin-port', '0', '--admin-host', '0.0.0.0', '--workgroups', '1']);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/--admin-host 0\.0\.0\.0 is not a loopback address and there is no --admin-token/);
    expect(lines[0]).toMatch(/--admin-public/);
    expect(r.stdout).not.toMatch(/c10m listening/);
    // The same from the environment.
    const e = await runCli(['serve', '--port', '0', '--admin-port', '0', '--workgroups', '1'], { C10M_ADMIN_HOST: '0.0.0.0' });
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/not a loopback address/);
  });

  test('with --admin-public: starts, with a loud warning in the log, and serves the admin port without a token', async () => {
    server = await startServer(['--workgroups', '1', '--admin-host', '0.0.0.0', '--admin-public']);
    const warning = server.logs.find((l) => typeof l.msg === 'string' && /admin port on 0\.0\.0\.0 has no --admin-token/.test(l.msg));
    expect(warning).toMatchObject({ level: 40, adminHost: '0.0.0.0' });
    expect((await fetch(server.adminUrl('/metrics'))).status).toBe(200);
  });

  test('with --admin-token on 0.0.0.0: starts without the warning; figures need the exact token (a wrong one of the same length too is 401)', async () => {
    server = await startServer(['--workgroups', '1', '--admin-host', '0.0.0.0', '--admin-token', 's3cret-token']);
    expect(server.logs.some((l) => typeof l.msg === 'string' && /has no --admin-token/.test(l.msg))).toBe(false);
    const status = async (auth?: string) => {
      const res = await fetch(server!.adminUrl('/metrics'), { headers: auth === undefined ? {} : { authorization: auth } });
      await res.text();
      return res.status;
    };
    expect(await status()).toBe(401);
    expect(await status('Bearer s3cret-tokeX')).toBe(401);
    expect(await status('Bearer s3cret')).toBe(401);
    expect(await status('Bearer s3cret-token-and-more')).toBe(401);
    expect(await status('Bearer ' + 's3cret-token'.repeat(1000))).toBe(401);
    expect(await status('')).toBe(401);
    expect(await status('bearer s3cret-token')).toBe(401);
    expect(await status('Bearer s3cret-token')).toBe(200);
    expect((await fetch(server.adminUrl('/healthz'))).status).toBe(200);
  });
});

describe('the /debug/* routes (--debug-routes, alias C10M_FAULT_INJECTION=1)', () => {
  test('off by default; on from the flag, its environment variable or the older alias; an explicit off wins over the alias', () => {
    expect(resolveConfig({}, {}, undefined).debugRoutes).toBe(false);
    expect(resolveConfig({ debugRoutes: true }, {}, undefined).debugRoutes).toBe(true);
    expect(resolveConfig({}, { C10M_DEBUG_ROUTES: '1' }, undefined).debugRoutes).toBe(true);
    expect(resolveConfig({}, { C10M_FAULT_INJECTION: '1' }, undefined).debugRoutes).toBe(true);
    expect(resolveConfig({}, { C10M_FAULT_INJECTION: '1', C10M_DEBUG_ROUTES: '0' }, undefined).debugRoutes).toBe(false);
    expect(resolveConfig({}, { C10M_FAULT_INJECTION: '0' }, undefined).debugRoutes).toBe(false);
  });

  test.each(['0.0.0.0', '10.0.0.5', '::'])('never with --admin-host %s, even with a token: ConfigError naming the source', (host) => {
    expect(() => resolveConfig({ debugRoutes: true, adminHost: host, adminToken: 't' }, {}, undefined)).toThrow(/--debug-routes turns on the \/debug\/\* routes.*not a loopback address/);
    expect(() => resolveConfig({ adminHost: host, adminPublic: true }, { C10M_FAULT_INJECTION: '1' }, undefined)).toThrow(/C10M_FAULT_INJECTION=1 turns on/);
    expect(() => resolveConfig({ adminHost: host, adminToken: 't' }, { C10M_DEBUG_ROUTES: 'true' }, undefined)).toThrow(/C10M_DEBUG_ROUTES turns on/);
  });

  test('c10m serve --debug-routes on a public admin host: exit code 2, one line, nothing listens', async () => {
    const r = await runCli(['serve', '--port', '0', '--admin-port', '0', '--admin-host', '0.0.0.0', '--admin-token', 't', '--debug-routes', '--workgroups', '1']);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/--debug-routes turns on the \/debug\/\* routes, which kill and stall workgroups, and --admin-host 0\.0\.0\.0 is not a loopback address/);
    expect(r.stdout).not.toMatch(/c10m listening/);
    const alias = await runCli(['serve', '--port', '0', '--admin-port', '0', '--admin-host', '0.0.0.0', '--admin-token', 't', '--workgroups', '1'], { C10M_FAULT_INJECTION: '1' });
    expect(alias.code).toBe(2);
    expect(alias.stderr).toMatch(/C10M_FAULT_INJECTION=1 turns on/);
  });

  test('without the flag POST /debug/stall is 404; with it (loopback) 202, and a warning at start', async () => {
    const post = async (s: TestServer) => {
      const res = await fetch(s.adminUrl('/debug/stall?workgroup=0&ms=1'), { method: 'POST' });
      await res.text();
      return res.status;
    };
    server = await startServer(['--workgroups', '1']);
    expect(await post(server)).toBe(404);
    expect(server.logs.some((l) => typeof l.msg === 'string' && /debug routes are on/.test(l.msg))).toBe(false);
    await server.stop();
    server = await startServer(['--workgroups', '1', '--debug-routes']);
    expect(await post(server)).toBe(202);
    expect(server.logs.find((l) => typeof l.msg === 'string' && /debug routes are on \(--debug-routes\)/.test(l.msg))).toMatchObject({ level: 40 });
  });
});
