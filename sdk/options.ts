// The client's handling of two per-call options (sdk/client.ts calls these):
// a subscription's `conflateMs` (protocol/conflation.ts: at most one message
// per interval, the latest, with the skipped count) and a publish's
// `idempotencyKey` (protocol/idempotency.ts: a publish the client resends
// after losing its connection, with the same key, is not published twice).
import { conflateError } from '../protocol/conflation';
import { ErrorCode } from '../protocol/errors';
import { idempotencyKeyError } from '../protocol/idempotency';
import { C10mError } from './errors';
import { TopicStream } from './stream';
import type { PendingRequest, PublishAck, QueuedPublish, SubscribeOptions, TopicState } from './types';

/** A topic's state for its first subscribe() (throws C10mError(BAD_REQUEST) for a conflateMs the server would refuse). */
export function newTopicState(topic: string, options: SubscribeOptions): TopicState {
  const conflateMs = conflateOption(topic, options.conflateMs);
  const stream = new TopicStream(topic);
  return { topic, qos: options.qos ?? 'guaranteed', conflateMs, stream, handlers: new Set(), pendingSubId: null, resumedFrom: null, early: [], confirmed: false, readyWaiters: [] };
}

/** The subscription's conflation interval (0: none); throws C10mError(BAD_REQUEST) for one the server would refuse. */
function conflateOption(topic: string, ms: number | undefined): number {
  if (ms === undefined || ms === 0) return 0;
  const err = conflateError(ms);
  if (err !== null) throw new C10mError(ErrorCode.BAD_REQUEST, err.replace('conflate', 'conflateMs'), topic);
  return ms;
}

/** A publish's idempotency key, or the error to reject it with (nothing is sent). */
export function idempotencyKeyOption(topic: string, key: string | undefined): string | undefined | C10mError {
  if (key === undefined) return undefined;
  const err = idempotencyKeyError(key);
  return err === null ? key : new C10mError(ErrorCode.BAD_REQUEST, err, topic);
}

/**
 * Subscriptions grouped into sub commands: one per quality and conflation
 * interval (both apply to every topic of a command), each at most `max`
 * topics, in the order the topics came.
 */
export function subCommandGroups(states: TopicState[], max: number): TopicState[][] {
  const byKind = new Map<string, TopicState[]>();
  for (const t of states) {
    const kind = `${t.qos}/${t.conflateMs}`;
    let group = byKind.get(kind);
    if (group === undefined) byKind.set(kind, (group = []));
    group.push(t);
  }
  const out: TopicState[][] = [];
  for (const group of byKind.values()) for (let i = 0; i < group.length; i += max) out.push(group.slice(i, i + max));
  return out;
}

/**
 * The connection was lost with these publishes unacknowledged: those with
 * an idempotency key go back to the front of the queue, in order, to be
 * sent again with it on the next connection (the server answers a repeat
 * with the first publish's position); the others are returned, to be
 * failed (they may or may not have been applied).
 */
export function requeueKeyed(lost: PendingRequest[], queue: QueuedPublish[]): PendingRequest[] {
  const again: QueuedPublish[] = [];
  const failed: PendingRequest[] = [];
  for (const req of lost) {
    if (req.publish?.idempotencyKey !== undefined) again.push(req.publish);
    else failed.push(req);
  }
  queue.unshift(...again);
  return failed;
}

/** A pub reply's {epoch, seq}, with duplicate: true when the server had published the key before. */
export function publishAck(reply: Record<string, unknown>): PublishAck {
  const ack: PublishAck = { epoch: reply.epoch as number, seq: reply.seq as number };
  if (reply.duplicate === true) ack.duplicate = true;
  return ack;
}
