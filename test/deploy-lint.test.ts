// Lint of deploy/: every YAML parses and is checked against the schema of
// its kind of file (Kubernetes objects, Grafana provisioning files,
// Prometheus configuration and rules); the manifests have what a rollout
// needs, and ports, probes, env names, flags and drain times agree with the
// server's own option table (server/config.ts) and with the computed
// kernel profile; the systemd unit passes `systemd-analyze verify` where
// that exists, and a structural parse everywhere; the container file builds
// the addon and runs as non-root; deploy/README.md's capacity table is what
// the cost model computes.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { envName, OPTIONS } from '../server/config';
import { DEFAULT_ADMIN_PORT, DEFAULT_DRAIN_TIMEOUT_SECONDS, DEFAULT_PUBLIC_PORT } from '../sysctl/costs';
import { computeProfile, memoryNeeded, profileEntry, profileNofile, sessionsForMemory } from '../sysctl/profile';
import { packageRoot } from '../native-io/package-root';

const ROOT = packageRoot();
const DEPLOY = path.join(ROOT, 'deploy');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;

function serverDefault(key: string): unknown {
  const spec = OPTIONS.find((o) => o.key === key);
  if (!spec) throw new Error(`server/config.ts has no option ${key}`);
  return spec.default();
}

const SERVER = {
  port: serverDefault('port') as number,
  adminPort: serverDefault('adminPort') as number,
  drainSeconds: serverDefault('drainTimeoutSeconds') as number,
};
const SERVER_ENV = new Set(OPTIONS.map((o) => envName(o.flag)).concat(['C10M_CONFIG']));
const SERVER_FLAGS = new Set(OPTIONS.map((o) => `--${o.flag}`).concat(['--config']));

function yamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(e.name) ? [full] : [];
  });
}

/** The kinds of YAML file in deploy/, each with its own schema, by the folder it lives in. */
type Schema = 'kubernetes' | 'compose' | 'grafana-provisioning' | 'prometheus';
const SCHEMA_OF_FOLDER: Record<string, Schema> = {
  k8s: 'kubernetes',
  'k8s-cluster': 'kubernetes',
  compose: 'compose',
  'grafana/provisioning': 'grafana-provisioning',
  prometheus: 'prometheus',
};
const schemaOf = (file: string): Schema | undefined => SCHEMA_OF_FOLDER[path.relative(DEPLOY, path.dirname(file))];

/** Every document of a YAML file; merge keys (`<<: *anchor`) resolved, as Compose resolves them. */
function loadYaml(file: string): Doc[] {
  return parseAllDocuments(fs.readFileSync(file, 'utf8'), { merge: true }).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Doc;
  });
}

const files = yamlFiles(DEPLOY);
const docs: Array<{ file: string; schema: Schema | undefined; doc: Doc }> = files.flatMap((file) => loadYaml(file).map((doc) => ({ file, schema: schemaOf(file), doc })));
const ofSchema = (schema: Schema) => docs.filter((d) => d.schema === schema);

/** Gi/Mi quantities to bytes. */
function quantityBytes(q: string): number {
  const m = /^(\d+)(Gi|Mi)$/.exec(q);
  if (!m) throw new Error(`unexpected quantity ${q}`);
  return Number(m[1]) * 2 ** (m[2] === 'Gi' ? 30 : 20);
}

/** Redis's memory units (`--maxmemory 3gb`) to bytes. */
function redisBytes(q: string): number {
  const m = /^(\d+)(gb|mb|kb)?$/i.exec(q);
  if (!m) throw new Error(`unexpected Redis size ${q}`);
  return Number(m[1]) * ({ gb: 2 ** 30, mb: 2 ** 20, kb: 2 ** 10 }[(m[2] ?? '').toLowerCase()] ?? 1);
}

/** A `--flag value` argument list's value for a flag. */
const argValue = (args: string[], flag: string): string | undefined => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);

test("the server defaults the deploy files assume are the server's own", () => {
  expect(SERVER).toEqual({ port: DEFAULT_PUBLIC_PORT, adminPort: DEFAULT_ADMIN_PORT, drainSeconds: DEFAULT_DRAIN_TIMEOUT_SECONDS });
});

test('every YAML in deploy/ parses and is a Kubernetes manifest, a Compose file, a Grafana provisioning file or a Prometheus file', () => {
  expect(files.length).toBeGreaterThanOrEqual(12);
  for (const { file, schema } of docs) expect({ file, schema }).toEqual({ file, schema: expect.any(String) });
  for (const schema of Object.values(SCHEMA_OF_FOLDER)) expect({ schema, found: ofSchema(schema).length > 0 }).toEqual({ schema, found: true });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** Kubernetes' strategic merge, as far as these manifests use it: maps merge, lists of named items merge by name, anything else is replaced. */
function strategicMerge(target: Obj, patch: Obj): void {
  for (const [k, v] of Object.entries(patch)) {
    const named = (x: unknown) => typeof x === 'object' && x !== null && 'name' in x;
    if (Array.isArray(v) && Array.isArray(target[k]) && v.every(named)) {
      for (const item of v) {
        const t = target[k].find((x: Obj) => x.name === item.name);
        if (t) strategicMerge(t, item);
        else target[k].push(item);
      }
    } else if (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof target[k] === 'object' && target[k] !== null) {
      strategicMerge(target[k], v);
    } else {
      target[k] = v;
    }
  }
}

/** The objects `kubectl kustomize DIR` renders, for the kustomize features these files use: resources (files and kustomization folders) and patch files. */
function kustomize(dir: string): Doc[] {
  const k = loadYaml(path.join(dir, 'kustomization.yaml'))[0];
  expect(Object.keys(k).filter((key) => !['apiVersion', 'kind', 'resources', 'patches'].includes(key))).toEqual([]);
  const objects: Doc[] = k.resources.flatMap((r: string) => {
    const full = path.join(dir, r);
    return fs.statSync(full).isDirectory() ? kustomize(full) : loadYaml(full);
  });
  for (const { path: file } of k.patches ?? []) {
    for (const patch of loadYaml(path.join(dir, file))) {
      const target = objects.find((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
      if (!target) throw new Error(`${dir}/${file}: no ${patch.kind} ${patch.metadata.name} to patch`);
      strategicMerge(target, patch);
    }
  }
  return objects;
}

/** Lists of named items sorted by name (kustomize puts the patch's new items first), for comparing renderings. */
function canonical(x: unknown): unknown {
  if (Array.isArray(x)) {
    const items = x.map(canonical);
    return items.every((i) => typeof i === 'object' && i !== null && 'name' in i) ? items.sort((a, b) => String((a as Obj).name).localeCompare(String((b as Obj).name))) : items;
  }
  if (typeof x === 'object' && x !== null) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, canonical(v)]));
  return x;
}

/** The pods' labels and containers of a workload (Deployment or StatefulSet). */
const podLabelsOf = (w: Doc): Record<string, string> => w.spec.template.metadata.labels;
const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

// The single-node set (the memory engine, one pod) and the cluster (its pods, three, on Redis).
const SETS = [
  { dir: 'k8s', engine: 'memory', replicas: 1 },
  { dir: 'k8s-cluster', engine: 'redis', replicas: 3 },
] as const;

describe.each(SETS)('Kubernetes manifests: deploy/$dir', ({ dir, engine, replicas }) => {
  const objects = kustomize(path.join(DEPLOY, dir));
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);

  test('each object names its kind and version', () => {
    for (const { file, doc } of ofSchema('kubernetes').filter((d) => path.dirname(d.file) === path.join(DEPLOY, dir))) {
      expect({ file, apiVersion: typeof doc.apiVersion, kind: typeof doc.kind }).toEqual({ file, apiVersion: 'string', kind: 'string' });
      if (doc.kind !== 'Kustomization') expect({ file, name: typeof doc.metadata?.name }).toEqual({ file, name: 'string' });
    }
    expect(ofKind('Deployment')).toHaveLength(1);
    expect(ofKind('PodDisruptionBudget')).toHaveLength(1);
    expect(ofKind('Service').length).toBeGreaterThanOrEqual(1);
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test('kubectl kustomize renders the same objects, where kubectl exists', () => {
    const which = spawnSync('sh', ['-c', 'command -v kubectl'], { encoding: 'utf8' });
    if (which.status !== 0) {
      // No kubectl here: the rendering above (resources and strategic-merge patches) is the check.
      expect(objects.length).toBeGreaterThan(0);
      return;
    }
    const r = spawnSync('kubectl', ['kustomize', path.join(DEPLOY, dir)], { encoding: 'utf8', timeout: 20_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    const rendered = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc);
    const byId = (list: Doc[]) => Object.fromEntries(list.map((o) => [`${o.kind}/${o.metadata.name}`, canonical(o)]));
    expect(byId(rendered)).toEqual(byId(objects));
  });

  const deployment = ofKind('Deployment')[0];
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c: Doc) => c.name === 'c10m');
  const env: Record<string, string> = Object.fromEntries(container.env.filter((e: Doc) => 'value' in e).map((e: Doc) => [e.name, e.value]));
  const portByName: Record<string, number> = Object.fromEntries(container.ports.map((p: Doc) => [p.name, p.containerPort]));
  const podLabels = podLabelsOf(deployment);

  test('the Deployment selects its own pods, as many as its engine allows', () => {
    expect(deployment.apiVersion).toBe('apps/v1');
    expect(selects(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(env.C10M_ENGINE ?? serverDefault('engine')).toBe(engine);
    // memory: each node is alone, so pods behind one Service would split topics between them
    expect(deployment.spec.replicas).toBe(replicas);
  });

  test("container ports and env agree with the server's defaults, and every C10M_ variable exists", () => {
    expect(portByName).toEqual({ ws: SERVER.port, admin: SERVER.adminPort });
    for (const e of container.env) expect(SERVER_ENV.has(e.name)).toBe(true);
    expect(Number(env.C10M_PORT ?? SERVER.port)).toBe(portByName.ws);
    expect(Number(env.C10M_ADMIN_PORT ?? SERVER.adminPort)).toBe(portByName.admin);
    // the admin port defaults to 127.0.0.1, where the kubelet's probes cannot reach it
    expect(container.args.join(' ')).toContain('--admin-host 0.0.0.0');
    // ... and off loopback without a token, the server starts only when told it is intended
    expect(container.args.join(' ')).toContain('--admin-public');
    expect(container.args.join(' ')).toContain('--host 0.0.0.0');
    for (const a of container.args.filter((x: string) => x.startsWith('--'))) expect(SERVER_FLAGS.has(a)).toBe(true);
  });

  test('readiness is /readyz and liveness /healthz, both on the admin port', () => {
    const port = (probe: Doc) => (typeof probe.httpGet.port === 'string' ? portByName[probe.httpGet.port] : probe.httpGet.port);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(port(container.readinessProbe)).toBe(SERVER.adminPort);
    expect(port(container.livenessProbe)).toBe(SERVER.adminPort);
    if (container.startupProbe) expect(port(container.startupProbe)).toBe(SERVER.adminPort);
  });

  test('the grace period covers the drain, with a few seconds to close', () => {
    const drain = Number(env.C10M_DRAIN_TIMEOUT_SECONDS ?? SERVER.drainSeconds);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(drain);
    expect(pod.terminationGracePeriodSeconds).toBeLessThanOrEqual(drain + 30);
  });

  test('the pod runs as non-root without privilege escalation', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.securityContext.capabilities.drop).toContain('ALL');
  });

  test("pod sysctls are namespaced and carry the profile's values for the pod's sessions", () => {
    const namespaced = new Set(['net.ipv4.tcp_rmem', 'net.ipv4.tcp_wmem', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_local_reserved_ports', 'net.core.somaxconn', 'net.ipv4.tcp_max_syn_backlog']);
    const sessions = Number(env.C10M_MAX_SESSIONS);
    const workgroups = Number(container.resources.limits.cpu);
    const profile = computeProfile({ sessions, workgroups });
    const sysctls = pod.securityContext.sysctls as Array<{ name: string; value: string }>;
    expect(sysctls.length).toBeGreaterThan(0);
    for (const s of sysctls) {
      expect(namespaced.has(s.name)).toBe(true);
      expect({ name: s.name, value: s.value }).toEqual({ name: s.name, value: profileEntry(profile, s.name)?.value });
    }
    // 1,000,096 descriptors fit under the kernel's default fs.nr_open, so the pods need no node change for descriptors
    expect(profile.needs.descriptorsPerProcess).toBeLessThanOrEqual(1_048_576);
  });

  test("the memory limit covers the pod's sessions, busy (one queued page each)", () => {
    const sessions = Number(env.C10M_MAX_SESSIONS);
    const workgroups = Number(container.resources.limits.cpu);
    const busy = memoryNeeded(sessions, workgroups, 1024) + sessions * 4096;
    expect(quantityBytes(container.resources.limits.memory)).toBeGreaterThanOrEqual(busy);
    expect(container.resources.requests.memory).toBe(container.resources.limits.memory);
  });

  test("Services select one workload's pods and target its named container ports", () => {
    const workloads = [...ofKind('Deployment'), ...ofKind('StatefulSet')];
    for (const svc of ofKind('Service')) {
      const selected = workloads.filter((w) => selects(svc.spec.selector, podLabelsOf(w)));
      expect({ service: svc.metadata.name, workloads: selected.length }).toEqual({ service: svc.metadata.name, workloads: 1 });
      const names = selected[0].spec.template.spec.containers.flatMap((c: Doc) => c.ports.map((p: Doc) => p.name));
      for (const p of svc.spec.ports) expect(names).toContain(p.targetPort);
    }
    const pub = ofKind('Service').find((s: Doc) => s.spec.ports.some((p: Doc) => p.targetPort === 'ws'));
    expect(pub.spec.externalTrafficPolicy).toBe('Local');
  });

  test('the PodDisruptionBudget covers the pods and allows one at a time', () => {
    const pdb = ofKind('PodDisruptionBudget')[0];
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(selects(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
  });

  test('the kustomization lists every manifest beside it, as a resource or a patch', () => {
    const k = loadYaml(path.join(DEPLOY, dir, 'kustomization.yaml'))[0];
    const manifests = fs.readdirSync(path.join(DEPLOY, dir)).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    const listed = [...k.resources, ...(k.patches ?? []).map((p: Doc) => p.path)].filter((r: string) => fs.statSync(path.join(DEPLOY, dir, r)).isFile());
    expect(listed.sort()).toEqual(manifests.sort());
  });

  if (engine !== 'redis') return;

  const redisUrls = String(env.C10M_REDIS_URL).split(',');
  const redisSts = ofKind('StatefulSet').find((s) => s.metadata.name === 'redis');
  const redis = redisSts?.spec.template.spec.containers.find((c: Doc) => c.name === 'redis');
  const redisArgs: string[] = redis?.args ?? [];

  test("--redis-url names the redis Service's port, and that Service is the Redis StatefulSet's", () => {
    expect(redisUrls).toHaveLength(1);
    const url = new URL(redisUrls[0]);
    expect(url.protocol).toBe('redis:');
    const svc = ofKind('Service').find((s) => s.metadata.name === url.hostname);
    expect(svc).toBeDefined();
    const port = svc.spec.ports.find((p: Doc) => p.port === Number(url.port || 6379));
    expect(port).toBeDefined();
    expect(selects(svc.spec.selector, podLabelsOf(redisSts))).toBe(true);
    expect(redis.ports.find((p: Doc) => p.name === port.targetPort).containerPort).toBe(6379);
    expect(redisSts.spec.serviceName).toBe(svc.metadata.name);
  });

  test("a pod waits for Redis within its startup probe's window", () => {
    const wait = Number(env.C10M_REDIS_WAIT_SECONDS ?? serverDefault('redisWaitSeconds'));
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThan(container.startupProbe.periodSeconds * container.startupProbe.failureThreshold);
  });

  test('Redis is 7, keeps an append-only file on a volume, and refuses writes rather than evict', () => {
    expect(redisSts.spec.replicas).toBe(1);
    expect(redis.image).toMatch(/^redis:7(\.\d+)*(-alpine)?$/);
    expect(redisArgs[0]).toBe('redis-server');
    expect(argValue(redisArgs, '--appendonly')).toBe('yes');
    expect(argValue(redisArgs, '--appendfsync')).toBe('everysec');
    expect(argValue(redisArgs, '--maxmemory-policy')).toBe('noeviction');
    // maxmemory below the container's limit: room for the AOF rewrite's fork and client buffers
    expect(redisBytes(argValue(redisArgs, '--maxmemory')!)).toBeLessThan(quantityBytes(redis.resources.limits.memory));
    const claim = redisSts.spec.volumeClaimTemplates.find((c: Doc) => c.metadata.name === 'data');
    expect(claim.spec.resources.requests.storage).toMatch(/^\d+Gi$/);
    expect(redis.volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    expect(redis.readinessProbe.exec.command).toEqual(['redis-cli', 'ping']);
    expect(redis.livenessProbe.tcpSocket.port).toBe('redis');
  });

  test('Redis runs as non-root, and only the c10m pods may reach it', () => {
    const spec = redisSts.spec.template.spec;
    expect(spec.securityContext.runAsNonRoot).toBe(true);
    expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
    expect(redis.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(redis.securityContext.capabilities.drop).toContain('ALL');
    const policies = ofKind('NetworkPolicy').filter((p) => selects(p.spec.podSelector.matchLabels, podLabelsOf(redisSts)));
    expect(policies).toHaveLength(1);
    expect(policies[0].spec.policyTypes).toEqual(['Ingress']);
    const from = policies[0].spec.ingress.flatMap((i: Doc) => i.from);
    expect(from.length).toBeGreaterThan(0);
    for (const f of from) expect(selects(f.podSelector.matchLabels, podLabels)).toBe(true);
  });
});

describe('Compose file', () => {
  const file = path.join(DEPLOY, 'compose/compose.yaml');
  const compose = loadYaml(file)[0];
  const services: Record<string, Doc> = compose.services;
  const nodes = Object.entries(services).filter(([, s]) => String(s.image).startsWith('c10m:'));
  const redis = services.redis;
  // The Compose specification's top-level and service keys (those a typo would miss).
  const TOP = ['name', 'services', 'volumes', 'networks', 'configs', 'secrets', 'include', 'version'];
  const SERVICE_KEYS = new Set(
    'build command configs container_name cpus depends_on deploy entrypoint env_file environment expose extra_hosts healthcheck hostname image init labels logging mem_limit network_mode networks pids_limit platform ports profiles pull_policy read_only restart secrets security_opt shm_size stop_grace_period stop_signal sysctls tmpfs ulimits user volumes working_dir'.split(
      ' ',
    ),
  );
  const seconds = (d: string) => {
    const m = /^(\d+)s$/.exec(d);
    if (!m) throw new Error(`unexpected duration ${d}`);
    return Number(m[1]);
  };

  test('has the keys of the Compose specification, three c10m nodes and one Redis', () => {
    for (const k of Object.keys(compose)) expect({ key: k, known: TOP.includes(k) || k.startsWith('x-') }).toEqual({ key: k, known: true });
    for (const [name, s] of Object.entries(services)) for (const k of Object.keys(s)) expect({ name, key: k, known: SERVICE_KEYS.has(k) }).toEqual({ name, key: k, known: true });
    expect(nodes).toHaveLength(3);
    expect(Object.keys(services).sort()).toEqual(['redis', ...nodes.map(([n]) => n)].sort());
  });

  test('the nodes are built from the container file, at the repository root', () => {
    for (const [, s] of nodes) {
      expect(path.resolve(path.dirname(file), s.build.context)).toBe(ROOT);
      expect(s.build.dockerfile).toBe('deploy/container/Dockerfile');
      expect(s.user).toBeUndefined(); // the image's uid 1000
    }
  });

  test('each node serves on Redis with flags the server knows, reachable from its health check', () => {
    for (const [name, s] of nodes) {
      const args: string[] = s.command;
      expect({ name, command: args[0] }).toEqual({ name, command: 'serve' });
      for (const a of args.filter((x) => x.startsWith('--'))) expect({ name, flag: a, known: SERVER_FLAGS.has(a) }).toEqual({ name, flag: a, known: true });
      expect(argValue(args, '--engine')).toBe('redis');
      expect(argValue(args, '--host')).toBe('0.0.0.0');
      expect(argValue(args, '--admin-host')).toBe('0.0.0.0');
      expect(args).toContain('--admin-public');
      const url = new URL(argValue(args, '--redis-url')!);
      expect(url.protocol).toBe('redis:');
      expect(url.hostname).toBe('redis');
      expect(Number(url.port || 6379)).toBe(Number(argValue(redis.command, '--port') ?? 6379));
      expect(s.depends_on.redis.condition).toBe('service_healthy');
      expect(s.restart).toBe('unless-stopped');
      // ready, not only alive: the engine's state shows in /readyz
      const adminPort = Number(argValue(args, '--admin-port') ?? SERVER.adminPort);
      expect(s.healthcheck.test[0]).toBe('CMD');
      expect(s.healthcheck.test.join(' ')).toContain(`http://127.0.0.1:${adminPort}/readyz`);
    }
  });

  test('public ports are published, admin ports on the host loopback only, none twice', () => {
    const hostPorts: string[] = [];
    for (const [name, s] of nodes) {
      const args: string[] = s.command;
      const port = Number(argValue(args, '--port') ?? SERVER.port);
      const adminPort = Number(argValue(args, '--admin-port') ?? SERVER.adminPort);
      const published = (s.ports as string[]).map((p) => {
        const parts = p.split(':');
        return { ip: parts.length === 3 ? parts[0] : '', host: parts[parts.length - 2], container: Number(parts[parts.length - 1]) };
      });
      expect({ name, containers: published.map((p) => p.container).sort() }).toEqual({ name, containers: [port, adminPort].sort() });
      expect(published.find((p) => p.container === adminPort)!.ip).toBe('127.0.0.1');
      hostPorts.push(...published.map((p) => p.host));
    }
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
    expect(redis.ports).toBeUndefined();
  });

  test('each node stops after its drain, and has the descriptors and socket buffers of the profile for its sessions', () => {
    for (const [name, s] of nodes) {
      const args: string[] = s.command;
      const drain = Number(argValue(args, '--drain-timeout-seconds') ?? SERVER.drainSeconds);
      expect(s.stop_signal ?? 'SIGTERM').toBe('SIGTERM');
      expect(seconds(s.stop_grace_period)).toBeGreaterThan(drain);
      expect(seconds(s.stop_grace_period)).toBeLessThanOrEqual(drain + 30);
      const profile = computeProfile({ sessions: Number(argValue(args, '--max-sessions')), workgroups: Number(argValue(args, '--workgroups')) });
      expect({ name, nofile: s.ulimits.nofile }).toEqual({ name, nofile: { soft: profileNofile(profile), hard: profileNofile(profile) } });
      for (const [key, value] of Object.entries(s.sysctls)) expect({ key, value }).toEqual({ key, value: profileEntry(profile, key)?.value });
    }
  });

  test('Redis is 7, keeps an append-only file on a named volume, refuses writes rather than evict, and has a health check', () => {
    expect(redis.image).toBe('redis:7-alpine');
    const args: string[] = redis.command;
    expect(args[0]).toBe('redis-server');
    expect(argValue(args, '--appendonly')).toBe('yes');
    expect(argValue(args, '--appendfsync')).toBe('everysec');
    expect(argValue(args, '--maxmemory-policy')).toBe('noeviction');
    const data = (redis.volumes as string[]).find((v) => v.endsWith(':/data'));
    expect(data).toBeDefined();
    expect(Object.keys(compose.volumes)).toContain(data!.split(':')[0]);
    expect(redis.healthcheck.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });
});

describe('commands in README.md and deploy/README.md', () => {
  const texts = ['README.md', 'deploy/README.md'].map((f) => ({ f, text: fs.readFileSync(path.join(ROOT, f), 'utf8') }));

  test('name deploy files that exist', () => {
    const named = texts.flatMap(({ text }) => [
      ...[...text.matchAll(/docker compose -f ([^\s`]+)/g)].map((m) => m[1]),
      ...[...text.matchAll(/kubectl apply -k ([^\s`]+)/g)].map((m) => path.join(m[1], 'kustomization.yaml')),
    ]);
    expect(named).toEqual(expect.arrayContaining(['deploy/compose/compose.yaml', 'deploy/k8s/kustomization.yaml', 'deploy/k8s-cluster/kustomization.yaml']));
    for (const f of named) expect({ f, exists: fs.existsSync(path.join(ROOT, f)) }).toEqual({ f, exists: true });
  });

  test('`c10m serve` lines use only flags the server knows', () => {
    const lines = texts.flatMap(({ f, text }) =>
      text
        .split('\n')
        .filter((l) => /c10m(\.js)? serve\b/.test(l))
        .map((l) => ({ f, l })),
    );
    const withRedis = lines.filter(({ l }) => l.includes('--engine redis'));
    expect(withRedis.length).toBeGreaterThanOrEqual(2);
    for (const { f, l } of lines) {
      const serve = l.slice(l.search(/c10m(\.js)? serve\b/)).split('`')[0]; // to the end of the inline code
      for (const [flag] of serve.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)) expect({ f, flag, known: SERVER_FLAGS.has(flag) || flag === '--help' }).toEqual({ f, flag, known: true });
    }
  });
});

describe('Grafana provisioning files', () => {
  // Grafana's schema (provisioning/dashboards and provisioning/datasources): apiVersion is the number 1, no kind.
  const provisioning = ofSchema('grafana-provisioning');
  const isAbsolute = (p: unknown) => typeof p === 'string' && p.startsWith('/');

  test('each is apiVersion 1 with exactly one list: providers or datasources', () => {
    for (const { file, doc } of provisioning) {
      expect({ file, apiVersion: doc.apiVersion, kind: doc.kind }).toEqual({ file, apiVersion: 1, kind: undefined });
      const lists = ['providers', 'datasources'].filter((k) => k in doc);
      expect({ file, lists }).toEqual({ file, lists: [expect.any(String)] });
      expect(Array.isArray(doc[lists[0]]) && doc[lists[0]].length > 0).toBe(true);
    }
  });

  test('dashboard providers read c10m-dashboard.json from a folder', () => {
    const providers = provisioning.flatMap(({ doc }) => doc.providers ?? []);
    expect(providers.length).toBeGreaterThan(0);
    for (const p of providers) {
      expect(typeof p.name).toBe('string');
      expect(p.type).toBe('file');
      expect(isAbsolute(p.options?.path)).toBe(true);
      for (const flag of ['disableDeletion', 'allowUiUpdates']) if (flag in p) expect(typeof p[flag]).toBe('boolean');
    }
    expect(fs.existsSync(path.join(DEPLOY, 'grafana/c10m-dashboard.json'))).toBe(true);
  });

  test('data sources have a name, a type, an access mode and a URL; one is the Prometheus the dashboard asks for', () => {
    const sources = provisioning.flatMap(({ doc }) => doc.datasources ?? []);
    expect(sources.length).toBeGreaterThan(0);
    for (const d of sources) {
      expect(typeof d.name).toBe('string');
      expect(typeof d.type).toBe('string');
      expect(['proxy', 'direct']).toContain(d.access);
      expect(new URL(d.url).protocol).toMatch(/^https?:$/);
    }
    expect(sources.filter((d: Doc) => d.isDefault === true).length).toBeLessThanOrEqual(1);
    const dashboard = JSON.parse(fs.readFileSync(path.join(DEPLOY, 'grafana/c10m-dashboard.json'), 'utf8'));
    const variable = dashboard.templating.list.find((v: Doc) => v.type === 'datasource');
    expect(sources.map((d: Doc) => d.type)).toContain(variable.query);
    // c10m's admin port serves /metrics, not Prometheus's query API: the data source is a Prometheus server.
    for (const d of sources) expect(Number(new URL(d.url).port)).not.toBe(SERVER.adminPort);
  });
});

describe('Prometheus files', () => {
  const dir = path.join(DEPLOY, 'prometheus');
  const configFile = path.join(dir, 'prometheus.yml');
  const config = ofSchema('prometheus').find((d) => d.file === configFile)?.doc;

  test('the config scrapes the admin port and names rule files that exist beside it', () => {
    expect(config).toBeDefined();
    for (const job of config.scrape_configs) expect(typeof job.job_name).toBe('string');
    const targets = config.scrape_configs.flatMap((j: Doc) => (j.static_configs ?? []).flatMap((c: Doc) => c.targets));
    expect(targets.length).toBeGreaterThan(0);
    for (const t of targets) expect(Number(t.split(':').pop())).toBe(SERVER.adminPort);
    for (const f of config.rule_files) expect(fs.existsSync(path.join(dir, f))).toBe(true);
  });

  test('every rule file is groups of rules, each rule a record or an alert with an expression', () => {
    const ruleFiles = ofSchema('prometheus').filter((d) => d.file !== configFile);
    expect(ruleFiles.map((d) => path.basename(d.file)).sort()).toEqual([...config.rule_files].sort());
    for (const { file, doc } of ruleFiles) {
      expect(Object.keys(doc)).toEqual(['groups']);
      for (const g of doc.groups) {
        expect({ file, group: typeof g.name }).toEqual({ file, group: 'string' });
        for (const r of g.rules) {
          const name = r.record ?? r.alert;
          expect({ file, name, recordOrAlert: 'record' in r !== 'alert' in r, expr: typeof r.expr }).toEqual({ file, name, recordOrAlert: true, expr: 'string' });
        }
      }
    }
  });

  test('promtool accepts the config and its rules where promtool exists', () => {
    const which = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
    if (which.status !== 0) {
      // No promtool here: the structural checks above are the check.
      expect(config.rule_files.length).toBeGreaterThan(0);
      return;
    }
    const r = spawnSync('promtool', ['check', 'config', configFile], { encoding: 'utf8', timeout: 20_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  });
});

describe('systemd unit', () => {
  const unitFile = path.join(DEPLOY, 'systemd/c10m.service');
  const text = fs.readFileSync(unitFile, 'utf8');

  /** Section -> key -> values (a key may repeat). Comments and blank lines dropped; no line continuations used. */
  function parseUnit(src: string): Record<string, Record<string, string[]>> {
    const out: Record<string, Record<string, string[]>> = {};
    let section = '';
    for (const raw of src.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      expect(line.endsWith('\\')).toBe(false);
      const s = /^\[(\w+)\]$/.exec(line);
      if (s) {
        section = s[1];
        out[section] = out[section] ?? {};
        continue;
      }
      const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
      if (!kv || section === '') throw new Error(`not a unit line: ${line}`);
      (out[section][kv[1]] = out[section][kv[1]] ?? []).push(kv[2]);
    }
    return out;
  }

  const unit = parseUnit(text);
  const service = unit.Service;
  const one = (key: string) => {
    expect(service[key]).toHaveLength(1);
    return service[key][0];
  };
  const exec = one('ExecStart').split(/\s+/);
  const flag = (name: string) => exec[exec.indexOf(name) + 1];

  test('has the three sections and starts `c10m serve` with flags the server knows', () => {
    expect(Object.keys(unit).sort()).toEqual(['Install', 'Service', 'Unit']);
    expect(exec.slice(1, 3)).toEqual(['/opt/c10m/bin/c10m.js', 'serve']);
    for (const a of exec.filter((x) => x.startsWith('--'))) expect(SERVER_FLAGS.has(a)).toBe(true);
    expect(Number(flag('--port'))).toBe(SERVER.port);
    expect(Number(flag('--admin-port'))).toBe(SERVER.adminPort);
  });

  test("LimitNOFILE is the profile's for its --max-sessions", () => {
    const sessions = Number(flag('--max-sessions'));
    expect(sessions).toBe(10_000_000);
    const limits = fs.readFileSync(path.join(ROOT, 'sysctl/limits-10m.conf'), 'utf8');
    expect(limits).toContain(`hard    nofile  ${one('LimitNOFILE')}`);
    expect(Number(one('LimitNOFILE'))).toBe(profileNofile(computeProfile({ sessions, workgroups: 12 })));
  });

  test('restarts on failure and stops gracefully: SIGTERM, then the drain, then a few seconds', () => {
    expect(one('Restart')).toBe('on-failure');
    expect(one('KillSignal')).toBe('SIGTERM');
    const drain = Number(flag('--drain-timeout-seconds'));
    expect(drain).toBe(SERVER.drainSeconds);
    const stop = Number(/^(\d+)s?$/.exec(one('TimeoutStopSec'))![1]);
    expect(stop).toBeGreaterThan(drain);
    expect(stop).toBeLessThanOrEqual(drain + 30);
  });

  test('is hardened, without the options that break V8 or the limits report', () => {
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('PrivateTmp')).toBe('yes');
    expect(one('CapabilityBoundingSet')).toBe('');
    expect(service.MemoryDenyWriteExecute).toBeUndefined();
    expect(service.ProcSubset).toBeUndefined();
  });

  test('systemd-analyze verify accepts it where systemd-analyze exists', () => {
    const which = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
    if (which.status !== 0) {
      // No systemd here: the structural parse above is the check.
      expect(unit.Service.ExecStart).toBeDefined();
      return;
    }
    const r = spawnSync('systemd-analyze', ['verify', unitFile], { encoding: 'utf8', timeout: 20_000 });
    const aboutUnit = r.stderr.split('\n').filter((l) => l.includes('c10m.service'));
    expect(aboutUnit).toEqual([]);
    expect(r.status).toBe(0);
  });
});

describe('container file', () => {
  const text = fs.readFileSync(path.join(DEPLOY, 'container/Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => !l.trim().startsWith('#'));
  const args: Record<string, string> = {};
  for (const l of lines) {
    const m = /^ARG (\w+)=(\S+)/.exec(l);
    if (m) args[m[1]] = m[2];
  }
  const expand = (s: string) => s.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? '');
  const froms = lines.filter((l) => l.startsWith('FROM ')).map((l) => expand(l).split(/\s+/));
  const final = text.slice(text.lastIndexOf('\nFROM '));

  test('builds in node:20-bookworm and runs in a bookworm image of the same Node', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms[0].slice(1)).toEqual(['node:20-bookworm', 'AS', 'build']);
    expect(froms[froms.length - 1][1]).toMatch(/^node:20-bookworm/);
  });

  test('the build stage builds the addon with node-gyp and fails without it', () => {
    const build = text.slice(0, text.lastIndexOf('\nFROM '));
    expect(build).toMatch(/RUN npm ci\b/);
    // npm ci runs this package's install script: native-io's node-gyp build first (then benchsub's, bench/loadgen)
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.install).toMatch(/^node native-io\/build\.js( && |$)/);
    expect(fs.readFileSync(path.join(ROOT, 'native-io/build.js'), 'utf8')).toContain('node-gyp');
    expect(build).toContain("require('./native-io/build/Release/c10m_native.node')");
    expect(build).toMatch(/npm prune --omit=dev/);
  });

  test('the runtime stage is non-root, exposes the server ports and stops with SIGTERM', () => {
    expect(final).toMatch(/COPY --from=build /);
    const user = /\nUSER (\S+)/.exec(final);
    expect(user).not.toBeNull();
    expect(user![1]).not.toMatch(/^(0|root)(:|$)/);
    expect(final).toContain(`EXPOSE ${SERVER.port} ${SERVER.adminPort}`);
    expect(final).toContain('STOPSIGNAL SIGTERM');
    expect(final).toContain(`http://127.0.0.1:${SERVER.adminPort}/healthz`);
    expect(final).toMatch(/CMD \["serve", "--host", "0\.0\.0\.0", "--admin-host", "0\.0\.0\.0", "--admin-public"\]/);
  });
});

describe('deploy/README.md capacity tables', () => {
  const readme = fs.readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
  const num = (s: string) => Number(s.replace(/[,*]/g, ''));

  test('sessions per node are what the cost model computes', () => {
    const rows = [...readme.matchAll(/^\| (\d+) GiB \| (\d+) \| .*?\| \*\*([\d,]+)\*\* \| \/ 9,216 → \*\*([\d,]+)\*\* \| ([\d,]+) \|$/gm)];
    expect(rows.length).toBeGreaterThanOrEqual(5);
    for (const [, ram, cores, idle, busy, nofile] of rows) {
      const bytes = Number(ram) * 2 ** 30;
      const w = Number(cores);
      expect(num(idle)).toBe(sessionsForMemory(bytes, w, 1024));
      expect(num(busy)).toBe(sessionsForMemory(bytes, w, 1024, 4096));
      expect(num(nofile)).toBe(profileNofile(computeProfile({ sessions: num(idle), workgroups: w })));
    }
  });

  test('memory per node for a target is what the cost model computes', () => {
    const rows = [...readme.matchAll(/^\| ([\d,]+) \| (\d+) \| [\d,]+ × 5,120 \+ [\d,]+ MiB = ([\d.]+) GiB \| ([\d.]+) GiB \| ([\d.]+) GiB \| ([\d,]+) \| (\d+) \|$/gm)];
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const [, sessions, w, idle, busy, node, nofile, huge] of rows) {
      const n = num(sessions);
      const m = memoryNeeded(n, Number(w), 1024);
      const p = computeProfile({ sessions: n, workgroups: Number(w) });
      expect([idle, busy, node]).toEqual([m, m + n * 4096, m + n * 4096 + 2 * 2 ** 30].map((b) => (b / 2 ** 30).toFixed(1)));
      expect(num(nofile)).toBe(profileNofile(p));
      expect(Number(huge)).toBe(p.needs.hugePages);
    }
  });
});
