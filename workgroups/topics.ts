// The owner's topic table. Topic T is owned by workgroup ownerOf(T); only
// the owner's thread reads or writes T's row (epoch, seq, interest). Rows
// live in typed arrays indexed by an interned topic id; the only per-topic
// JS values are the Map entry from name to id and the name itself.

/** Most workgroups a node runs: interest is a 32-bit mask per encoding. */
export const MAX_WORKGROUPS = 32;

const INITIAL_ROWS = 1024;

/** FNV-1a over the topic's characters (ASCII): the same on every thread and node. */
export function topicHash(topic: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < topic.length; i++) {
    h ^= topic.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function ownerOf(topic: string, workgroups: number): number {
  return workgroups === 1 ? 0 : topicHash(topic) % workgroups;
}

export class TopicTable {
  private readonly ids = new Map<string, number>();
  private names: (string | undefined)[] = [];
  /** Random 32-bit epoch chosen when the topic's history starts. */
  epoch = new Uint32Array(INITIAL_ROWS);
  /** Seq of the last message sequenced (0: none yet). Below 2^53. */
  seq = new Float64Array(INITIAL_ROWS);
  /** Bit w set: workgroup w has subscribers of the topic (or subscriptions on their way). */
  interest = new Uint32Array(INITIAL_ROWS);
  /** Last second (unix) the row was published to or subscribed to: idle rows are released. */
  touchedSec = new Uint32Array(INITIAL_ROWS);
  private freeIds: number[] = [];
  private nextId = 0;

  get size(): number {
    return this.ids.size;
  }

  /** The topic's id, or -1 when it has no row. */
  find(topic: string): number {
    const id = this.ids.get(topic);
    return id === undefined ? -1 : id;
  }

  /** The topic's id, creating its row (and starting its history with a new epoch) if needed. */
  intern(topic: string): number {
    const existing = this.ids.get(topic);
    if (existing !== undefined) return existing;
    const id = this.freeIds.length > 0 ? (this.freeIds.pop() as number) : this.nextId++;
    if (id >= this.epoch.length) this.grow();
    this.ids.set(topic, id);
    this.names[id] = topic;
    this.epoch[id] = newEpoch();
    this.seq[id] = 0;
    this.interest[id] = 0;
    this.touchedSec[id] = 0;
    return id;
  }

  /** Rows in use or freed: ids are below this. */
  get rows(): number {
    return this.nextId;
  }

  name(id: number): string {
    return this.names[id] as string;
  }

  /** Drops a row whose history nobody can need any more (no interest, nothing cached or retained). */
  release(id: number): void {
    const name = this.names[id];
    if (name === undefined) return;
    this.ids.delete(name);
    this.names[id] = undefined;
    this.freeIds.push(id);
  }

  private grow(): void {
    const n = this.epoch.length * 2;
    const grow32 = (a: Uint32Array) => { const b = new Uint32Array(n); b.set(a); return b; };
    this.epoch = grow32(this.epoch);
    this.interest = grow32(this.interest);
    this.touchedSec = grow32(this.touchedSec);
    const s = new Float64Array(n);
    s.set(this.seq);
    this.seq = s;
  }
}

/**
 * A workgroup's subscriptions in flight: topics with a sub sent to their
 * owner and not answered yet, with how many. uWS counts the subscribers
 * once they are answered; together they say whether this workgroup still
 * needs a topic's messages. An entry lives only while its count is above 0
 * (an idle subscribed session costs nothing here).
 */
export class LocalTopics {
  private readonly counts = new Map<string, number>();

  /** Topics with subscriptions in flight. */
  get size(): number {
    return this.counts.size;
  }

  /** Subscriptions of the topic in flight. */
  pending(topic: string): number {
    return this.counts.get(topic) ?? 0;
  }

  add(topic: string): void {
    this.counts.set(topic, (this.counts.get(topic) ?? 0) + 1);
  }

  /** One subscription of the topic was answered (or given up). */
  done(topic: string): void {
    const n = this.counts.get(topic);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(topic);
    else this.counts.set(topic, n - 1);
  }

  topics(): IterableIterator<string> {
    return this.counts.keys();
  }
}

function newEpoch(): number {
  // Never 0, so that [0, 0] can mean "nothing seen yet" to a client.
  let e = 0;
  while (e === 0) e = (Math.random() * 0x100000000) >>> 0;
  return e;
}
