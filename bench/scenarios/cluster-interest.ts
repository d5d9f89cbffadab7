// The cluster scenario's interest part (bench/scenarios/cluster.ts): Redis's
// outbound bytes by the nodes that want a topic.

import { splitAddresses } from '../addresses';
import { pubConfig, startPublisher, type Progress, type RunOptions } from '../harness';
import { type BenchRedis } from '../redis';
import type { Check } from '../report';
import { SubscriberFleet } from '../sub';
import { type Target } from '../targets';
import { DEFAULTS, Live, sleep, metricSum } from './cluster-common';

export interface InterestCase {
  present: number;
  subscribed: number;
  nodes: string;
  messages: number;
  outBytes: number;
  bytesPerMessage: number;
  /** c10m_redis_messages_received_total of each present node over the case ("–" when the build has no such metric). */
  received: string;
  /** Nodes without subscribers that received messages of the topic from Redis (null: no metric). */
  strayNodes: number | null;
  checks: Check[];
}

export async function outBytes(redis: BenchRedis): Promise<number> {
  return Number((await redis.info('stats')).total_net_output_bytes);
}

export async function interestCases(redis: BenchRedis, nodes: Target[], o: RunOptions, progress: Progress, live: Live, dropToOne: () => Promise<void>): Promise<InterestCase[]> {
  const count = DEFAULTS.interestMessages;
  const size = o.size ?? DEFAULTS.size;
  const perNode = DEFAULTS.interestSessionsPerNode;
  const [a, b, c] = nodes;
  // The INFO reply itself is counted in the next reading: measured once, taken off every case.
  const x0 = await outBytes(redis);
  const x1 = await outBytes(redis);
  const infoBytes = x1 - x0;
  const hasMetric = (await metricSum(a, 'c10m_redis_messages_received_total')) !== null;
  const plan: { present: Target[]; subscribed: Target[] }[] = [
    { present: [a, b, c], subscribed: [] },
    { present: [a, b, c], subscribed: [c] },
    { present: [a, b, c], subscribed: [b, c] },
    { present: [a, b, c], subscribed: [a, b, c] },
    { present: [a], subscribed: [a] },
  ];
  const out: InterestCase[] = [];
  progress.phase('interest', 'cases', plan.length);
  for (let k = 0; k < plan.length; k++) {
    const { present, subscribed } = plan[k];
    if (present.length === 1 && nodes.length > 1) await dropToOne();
    const pattern = `/interest/case${k}-{n}`;
    const fleets: SubscriberFleet[] = [];
    try {
      for (let i = 0; i < subscribed.length; i++) {
        const f = new SubscriberFleet({
          url: subscribed[i].subUrl,
          connections: perNode,
          processes: 1,
          sourceAddresses: splitAddresses(o.sourceAddresses, 3, i),
          topicPattern: pattern,
          topicsPerSession: 1,
          topicCount: 1,
          maxPending: 64,
          engine: o.engine,
          tickMs: 100,
        });
        fleets.push(f);
        live.fleets.add(f);
        await f.start();
        if (!(await f.until((s) => s.ready + s.failed >= perNode, o.connectTimeoutSeconds * 1000)) || f.stats().failed > 0)
          throw new Error(`interest: ${f.stats().ready} of ${perNode} sessions got ready on ${subscribed[i].name} (${f.stats().firstError ?? 'no error reported'})`);
      }
      const receivedBefore = hasMetric ? await Promise.all(present.map((n) => metricSum(n, 'c10m_redis_messages_received_total'))) : null;
      const before = await outBytes(redis);
      const pub = await startPublisher({
        ...pubConfig(a, { size, topicCount: 1, schedule: [{ atSeconds: 0, rate: DEFAULTS.interestRate }], durationSeconds: 30, maxMessages: count, connections: 1 }),
        topicPattern: pattern,
      });
      live.pubs.add(pub);
      pub.go();
      const final = await pub.done;
      live.pubs.delete(pub);
      await Promise.all(fleets.map((f) => f.until((s) => s.messages >= final.published * perNode, 10000)));
      const after = await outBytes(redis);
      const bytes = after - before - infoBytes;
      const checks: Check[] = [];
      subscribed.forEach((n, i) => {
        const got = fleets[i].stats().messages;
        checks.push({
          name: `interest, ${subscribed.length} of ${present.length} nodes subscribed: the sessions on ${n.name} got every message`,
          ok: got === count * perNode,
          detail: `${got} of ${count * perNode}`,
        });
      });
      checks.push({
        name: `interest, ${subscribed.length} of ${present.length}: publisher had no message refused`,
        ok: final.errors === 0 && final.published === count,
        detail: `${final.published} published, ${final.errors} errors`,
      });
      let received = '–';
      let strayNodes: number | null = null;
      if (receivedBefore !== null) {
        // Node metrics are a snapshot of up to a second ago.
        await sleep(1200);
        const receivedAfter = await Promise.all(present.map((n) => metricSum(n, 'c10m_redis_messages_received_total')));
        const deltas = present.map((_, i) => (receivedAfter[i] ?? 0) - (receivedBefore[i] ?? 0));
        received = present.map((n, i) => `${n.name.replace('node-', '')} ${deltas[i]}`).join(', ');
        strayNodes = present.filter((n, i) => !subscribed.includes(n) && deltas[i] > 0).length;
        checks.push({
          name: `interest, ${subscribed.length} of ${present.length}: nodes without subscribers received nothing from Redis, the others every message`,
          ok: strayNodes === 0 && present.every((n, i) => !subscribed.includes(n) || deltas[i] >= count),
          detail: received,
        });
      }
      for (const f of fleets) await f.stop();
      out.push({
        present: present.length,
        subscribed: subscribed.length,
        nodes: subscribed.length ? subscribed.map((n) => n.name.replace('node-', '')).join('+') : 'none',
        messages: final.published,
        outBytes: bytes,
        bytesPerMessage: Math.round(bytes / Math.max(1, final.published)),
        received,
        strayNodes,
        checks,
      });
      progress.update(k + 1, `${subscribed.length}/${present.length} nodes: ${Math.round(bytes / Math.max(1, final.published))} B/message`);
    } finally {
      for (const f of fleets) {
        f.kill();
        live.fleets.delete(f);
      }
    }
  }
  progress.stop();
  return out;
}

// ---- the result ----
