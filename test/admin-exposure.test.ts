// The admin port off loopback: refused without a token unless --admin-public
// says it is intended (then a loud warning), and the token compared in
// constant time.
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
    expect(await status('bearer s3cret-token')).toBe(401);
    expect(await status('Bearer s3cret-token')).toBe(200);
    expect((await fetch(server.adminUrl('/healthz'))).status).toBe(200);
  });
});
