// Helpers for the guaranteed-delivery tests (test/guaranteed.test.ts):
// a sub whose reply is placed among the deliveries (what came before it),
// pipelined publishes with acks, and checks on runs of seqs.
import type { Delivery, TestClient } from './client';

/** A topic's entry in a sub reply. */
export interface SubEntry {
  epoch: number;
  seq: number;
  recovered?: boolean;
  reason?: string;
  replayed?: number;
  [k: string]: unknown;
}

export interface MarkedSub {
  reply: Record<string, unknown>;
  /** Deliveries that arrived after the sub was sent and before its reply. */
  before: Delivery[];
  /** Index in client.deliveries of the first delivery after the reply. */
  replyIndex: number;
  /** The reply's entry for each topic. */
  topics: Record<string, SubEntry>;
}

let subIds = 0;

/**
 * Sends a sub and notes where its reply fell among the deliveries. The
 * client's own 'message' listener runs first (it was added first), so when
 * ours sees the reply every frame before it has been recorded.
 */
export async function subscribeMarked(client: TestClient, topics: string[], extra: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<MarkedSub> {
  const id = `gsub-${++subIds}`;
  const start = client.deliveries.length;
  let replyIndex = -1;
  const listener = () => {
    if (replyIndex < 0 && client.replies.has(id)) replyIndex = client.deliveries.length;
  };
  client.ws.on('message', listener);
  try {
    client.send({ id, op: 'sub', topics, ...extra });
    await client.until(() => client.replies.has(id) || client.closeCode !== null, timeoutMs, `reply to sub ${topics.join(',')}`);
  } finally {
    client.ws.off('message', listener);
  }
  const reply = client.replies.get(id) as Record<string, unknown> | undefined;
  if (reply === undefined)
    throw new Error(`the session closed (${client.closeCode} ${client.closeReason}) before the reply to sub ${topics.join(',')}; ${client.deliveries.length - start} deliveries after the sub`);
  if (replyIndex < 0) replyIndex = client.deliveries.length;
  return { reply, before: client.deliveries.slice(start, replyIndex), replyIndex, topics: (reply.topics ?? {}) as Record<string, SubEntry> };
}

export interface Ack {
  epoch: number;
  seq: number;
}

let pubIds = 0;

/**
 * Publishes `n` messages to `topic` with acks, `window` at a time in flight,
 * and returns the acks in send order. Throws on an error reply.
 */
export async function publishMany(
  client: TestClient,
  topic: string,
  n: number,
  data: (i: number) => unknown,
  opts: { window?: number; retain?: (i: number) => boolean; timeoutMs?: number; onAck?: (i: number, ack: Ack) => void } = {},
): Promise<Ack[]> {
  const window = opts.window ?? 100;
  const acks: Ack[] = [];
  for (let base = 0; base < n; base += window) {
    const ids: string[] = [];
    for (let i = base; i < Math.min(n, base + window); i++) {
      const id = `gpub-${++pubIds}`;
      ids.push(id);
      const cmd: Record<string, unknown> = { id, op: 'pub', topic, data: data(i), ack: true };
      if (opts.retain?.(i)) cmd.retain = true;
      client.send(cmd);
    }
    await client.until(() => client.closeCode !== null || ids.every((id) => client.replies.has(id)), opts.timeoutMs ?? 20_000, `${ids.length} acks on ${topic}`);
    if (!ids.every((id) => client.replies.has(id))) throw new Error(`the publishing session closed (${client.closeCode} ${client.closeReason}) with publishes to ${topic} unacked`);
    ids.forEach((id, k) => {
      const r = client.replies.get(id) as Record<string, unknown>;
      client.replies.delete(id);
      if (r.ok !== true) throw new Error(`publish ${base + k} to ${topic} failed: ${JSON.stringify(r)}`);
      const ack = { epoch: r.epoch as number, seq: r.seq as number };
      acks.push(ack);
      opts.onAck?.(base + k, ack);
    });
  }
  return acks;
}

/** [from, from+1, .., to] */
export function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let s = from; s <= to; s++) out.push(s);
  return out;
}

/** Describes the first place where `seqs` is not from, from+1, .., to (null when it is). */
export function firstBreak(seqs: number[], from: number, to: number): string | null {
  for (let i = 0; i < seqs.length; i++) {
    if (seqs[i] !== from + i)
      return `at index ${i}: expected seq ${from + i}, got ${seqs[i]} (${seqs[i] < from + i ? 'duplicate or out of order' : 'gap'}); neighbours ${JSON.stringify(seqs.slice(Math.max(0, i - 3), i + 4))}`;
  }
  if (seqs.length !== to - from + 1) return `expected ${to - from + 1} seqs (${from}..${to}), got ${seqs.length} (last ${seqs[seqs.length - 1]})`;
  return null;
}

/** A different non-zero u32 epoch. */
export function otherEpoch(epoch: number): number {
  return (epoch % 0xfffffffe) + 1;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
