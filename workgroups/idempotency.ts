// The memory engine's idempotency keys (protocol/idempotency.ts): per topic,
// the keys of recent publishes and the (epoch, seq) each got, kept for the
// window. The topic's owner looks a key up in the same step that would
// assign the seq (workgroups/owner.ts), so two publishes with one key can
// never both be sequenced: the owner's thread is the only one that reads or
// writes this table.
//
// Memory is bounded per topic: at most `maxPerTopic` keys; a new key past
// it forgets the topic's oldest one before its window ends (counted in
// IDEMPOTENCY_KEYS_EVICTED: a retry of that key would be published again).
// Keys live in one insertion-ordered Map per topic; since the window is the
// same for every key, the oldest are also the first to expire, so expiry
// walks from the front and stops at the first live key.
import { Stat } from '../protocol/stats';

interface KeyEntry {
  epoch: number;
  seq: number;
  expiresMs: number;
}

/** Topics whose expired keys the sweep looks at per call (once a second). */
const SWEEP_TOPICS = 4096;

export class IdempotencyKeys {
  private readonly topics = new Map<string, Map<string, KeyEntry>>();
  /** The sweep's place among the topics, carried from one call to the next. */
  private cursor: IterableIterator<[string, Map<string, KeyEntry>]> | null = null;
  private keys = 0;

  constructor(
    private readonly windowMs: number,
    private readonly maxPerTopic: number,
    private readonly stats: Float64Array,
  ) {}

  /** The (epoch, seq) the first publish of `key` to `topic` got, while within the window; else null. */
  find(topic: string, key: string, nowMs: number): KeyEntry | null {
    const keys = this.topics.get(topic);
    if (keys === undefined) return null;
    const e = keys.get(key);
    if (e === undefined || e.expiresMs <= nowMs) return null;
    return e;
  }

  /** Remembers that the publish of `key` to `topic` got (epoch, seq). */
  remember(topic: string, key: string, epoch: number, seq: number, nowMs: number): void {
    let keys = this.topics.get(topic);
    if (keys === undefined) {
      keys = new Map();
      this.topics.set(topic, keys);
    }
    this.expire(keys, nowMs);
    // A key whose window ended is taken again: it goes to the back, with its new position.
    if (keys.delete(key)) this.keys--;
    while (keys.size >= this.maxPerTopic) {
      keys.delete(keys.keys().next().value as string);
      this.keys--;
      this.stats[Stat.IDEMPOTENCY_KEYS_EVICTED]++;
    }
    keys.set(key, { epoch, seq, expiresMs: nowMs + this.windowMs });
    this.keys++;
    this.stats[Stat.IDEMPOTENCY_KEYS] = this.keys;
  }

  /** Once a second: forgets the expired keys of a share of the topics (all of them within a few calls). */
  sweep(nowMs: number): void {
    if (this.topics.size === 0) return;
    this.cursor ??= this.topics.entries();
    for (let i = 0; i < SWEEP_TOPICS; i++) {
      const next = this.cursor.next();
      if (next.done === true) {
        this.cursor = null;
        break;
      }
      const [topic, keys] = next.value;
      this.expire(keys, nowMs);
      if (keys.size === 0) this.topics.delete(topic);
    }
    this.stats[Stat.IDEMPOTENCY_KEYS] = this.keys;
  }

  /** Drops the topic's expired keys, oldest first. */
  private expire(keys: Map<string, KeyEntry>, nowMs: number): void {
    for (const [key, e] of keys) {
      if (e.expiresMs > nowMs) return;
      keys.delete(key);
      this.keys--;
    }
  }

  /** Keys held now (tests, figures). */
  get size(): number {
    return this.keys;
  }
}
