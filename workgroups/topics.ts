// The owner's topic table. Topic T is owned by workgroup ownerOf(T); only
// the owner's thread reads or writes T's row (epoch, seq, interest). Rows
// live in typed arrays indexed by an interned topic id, found through an
// open-addressing index in a typed array; the only per-topic JS value is
// the name itself.

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

/** A hash's home slot in an index of 2^(32 - shift) slots: the top bits of its Fibonacci hash. */
function homeSlot(hash: number, shift: number): number {
  return Math.imul(hash, 0x9e3779b1) >>> shift;
}

/** Index slots at start (a power of two): room for 1,536 topics at 3/4 full. */
const INITIAL_INDEX = 2048;

/**
 * The owner's topic table: an open-addressing index (linear probing, at
 * most 3/4 full) from a topic's hash to its row, and the rows in typed
 * arrays. Per topic: its name, 4 B of index slot per 3/4 of a slot, and the
 * row (epoch 4, seq 8, interest 4, touched 4, hash 4 B), rows growing by
 * half. A `Map` from name to id cost 48 B per topic at 19,000 topics
 * (docs/PERFORMANCE.md, idle memory); this costs about 6 B of index (docs/ARCHITECTURE.md,
 * "Memory layout"). The hash is FNV-1a (topicHash), kept per row so that
 * growing the index and deleting never hash a name again.
 */
export class TopicTable {
  /** Row id + 1 per slot; 0: empty. A power of two long. */
  private index = new Int32Array(INITIAL_INDEX);
  /** 32 - log2(index length): a hash's home slot is its Fibonacci hash's top bits. */
  private shift = 32 - Math.log2(INITIAL_INDEX);
  private count = 0;
  private names: (string | undefined)[] = [];
  /** topicHash of the row's name. */
  private hashes = new Uint32Array(INITIAL_ROWS);
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
    return this.count;
  }

  /** Index slots (a power of two; tests and the memory notes). */
  get indexSlots(): number {
    return this.index.length;
  }

  /** The topic's id, or -1 when it has no row. */
  find(topic: string): number {
    const index = this.index;
    const mask = index.length - 1;
    const h = topicHash(topic);
    for (let i = homeSlot(h, this.shift); ; i = (i + 1) & mask) {
      const v = index[i];
      if (v === 0) return -1;
      const id = v - 1;
      if (this.hashes[id] === h && this.names[id] === topic) return id;
    }
  }

  /** The topic's id, creating its row (and starting its history with a new epoch) if needed. */
  intern(topic: string): number {
    const index = this.index;
    const mask = index.length - 1;
    const h = topicHash(topic);
    let i = homeSlot(h, this.shift);
    for (; ; i = (i + 1) & mask) {
      const v = index[i];
      if (v === 0) break;
      const id = v - 1;
      if (this.hashes[id] === h && this.names[id] === topic) return id;
    }
    const id = this.freeIds.length > 0 ? (this.freeIds.pop() as number) : this.nextId++;
    if (id >= this.epoch.length) this.growRows();
    this.names[id] = topic;
    this.hashes[id] = h;
    this.epoch[id] = newEpoch();
    this.seq[id] = 0;
    this.interest[id] = 0;
    this.touchedSec[id] = 0;
    index[i] = id + 1;
    if (++this.count * 4 > index.length * 3) this.growIndex();
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
    if (this.names[id] === undefined) return;
    const index = this.index;
    const mask = index.length - 1;
    const shift = this.shift;
    let hole = homeSlot(this.hashes[id], shift);
    while (index[hole] !== id + 1) hole = (hole + 1) & mask;
    // Backward-shift deletion (no tombstones): an entry further along the
    // run moves into the hole when the hole lies between its home and it.
    for (let j = (hole + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const home = homeSlot(this.hashes[index[j] - 1], shift);
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        index[hole] = index[j];
        hole = j;
      }
    }
    index[hole] = 0;
    this.names[id] = undefined;
    this.freeIds.push(id);
    this.count--;
  }

  private growIndex(): void {
    const old = this.index;
    const index = new Int32Array(old.length * 2);
    const mask = index.length - 1;
    const shift = this.shift - 1;
    for (let k = 0; k < old.length; k++) {
      const v = old[k];
      if (v === 0) continue;
      let i = homeSlot(this.hashes[v - 1], shift);
      while (index[i] !== 0) i = (i + 1) & mask;
      index[i] = v;
    }
    this.index = index;
    this.shift = shift;
  }

  /** Rows grow by half (not doubling): an idle topic's row slack stays under 50 %. */
  private growRows(): void {
    const n = this.epoch.length + (this.epoch.length >> 1);
    const grow32 = (a: Uint32Array) => {
      const b = new Uint32Array(n);
      b.set(a);
      return b;
    };
    this.hashes = grow32(this.hashes);
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
