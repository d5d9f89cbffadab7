// The owner's side of wildcard subscriptions (protocol/wildcard.ts): which
// workgroups hold sessions subscribed to which patterns, so that a message
// of a matching topic goes to them too, and the journal that resumes need.
//
// - Interest: a trie of the patterns some workgroup holds, each with a mask
//   of those workgroups. A topic's pattern mask is matched once and kept per
//   topic row (with the generation of the pattern set and the row's epoch),
//   so a publish costs two typed-array reads while the set does not change,
//   and one check (`on`) on a node that never had a pattern.
// - Journal: from the first pattern on, every message this owner sequences
//   appends (topic name, epoch, seq) to a ring of `capacity` entries; its
//   count so far is the owner's log position. A pattern subscription is
//   answered with that position (the horizon: everything after it reaches
//   the subscriber live). A resume gives it back: the entries since name
//   every topic that had messages the client never received, with the seq
//   before the first one. Past the ring's reach, or from another owner's
//   life (journal epoch), the answer is HORIZON_LOST.
//
// Concurrency: the owner workgroup's thread only, like the topic table.
import { compilePattern, matchPattern } from '../protocol/patterns';
import type { TopicTable } from './topics';
import { PatternTrie } from './pattern-trie';

/** Flag bits of a PATTERN record (one comment per bit). */
export const PatternFlag = {
  /** A session of the sender subscribes to the pattern (else: one let go of it). */
  SUB: 1 << 0,
  /** SUB: the session resumes from the horizon (journal epoch, position). */
  RESUME: 1 << 1,
} as const;

/** PATTERN_DONE status. */
export const PatternStatus = {
  OK: 0,
  /** The journal no longer reaches the horizon (or it is another owner's): topics the client never saw may have lost messages. */
  HORIZON_LOST: 1,
} as const;

/** What a subscriber's workgroup asks a topic's owner about patterns. */
export interface PatternOwnerPort {
  pattern(from: number, token: number, pattern: string, flags: number, journalEpoch: number, horizon: number): void;
}

/** What an owner answers a pattern subscription: its journal position, and (RESUME) the topics to resume, as JSON [[topic, epoch, seq], ...]. */
export interface PatternSubscriberPort {
  patternDone(owner: number, token: number, status: number, journalEpoch: number, position: number, topics: Uint8Array): void;
}

class OwnedPattern {
  mask = 0;
  constructor(
    readonly source: string,
    /** Sessions of each workgroup subscribed to it (a plain array: a typed array costs ~200 B per pattern). */
    readonly counts: number[],
  ) {}
}

const EMPTY = new Uint8Array(0);

export class PatternOwner implements PatternOwnerPort {
  /** True from the first pattern on: accept() calls onAccept (and the journal records) from then. */
  on = false;
  /** Random, never 0: tells this owner's journal from a previous life's. */
  readonly journalEpoch: number;
  private readonly byPattern = new Map<string, OwnedPattern>();
  private readonly trie = new PatternTrie<OwnedPattern>();
  private generation = 1;
  private maskGen = new Uint32Array(0);
  private maskEpoch = new Uint32Array(0);
  private masks = new Uint32Array(0);
  /** The topic table's own name strings (no copy per message). */
  private jName: string[] = [];
  private jEpoch = new Uint32Array(0);
  private jSeq = new Float64Array(0);
  private head = 0;
  /** Entries ever appended: the owner's log position. */
  private written = 0;
  private acc = 0;
  private readonly accumulate = (p: OwnedPattern): void => {
    this.acc |= p.mask;
  };

  constructor(
    private readonly id: number,
    /** Workgroups in the node (at most MAX_WORKGROUPS). */
    private readonly workgroups: number,
    private readonly topics: TopicTable,
    private readonly capacity: number,
    private readonly subscriber: (w: number) => PatternSubscriberPort,
  ) {
    let e = 0;
    while (e === 0) e = (Math.random() * 0x100000000) >>> 0;
    this.journalEpoch = e;
  }

  /** Patterns held by some workgroup (tests, figures). */
  get size(): number {
    return this.byPattern.size;
  }

  /** Journal entries so far (tests, figures). */
  get position(): number {
    return this.written;
  }

  /** One message sequenced (called only while `on`): journaled; returns the workgroups whose patterns match. No allocation. */
  onAccept(tid: number, topic: string, epoch: number, seq: number): number {
    const h = this.head;
    this.jName[h] = this.topics.name(tid);
    this.jEpoch[h] = epoch;
    this.jSeq[h] = seq;
    this.head = h + 1 === this.capacity ? 0 : h + 1;
    this.written++;
    if (this.byPattern.size === 0) return 0;
    if (tid >= this.masks.length) this.growRows();
    if (this.maskGen[tid] === this.generation && this.maskEpoch[tid] === epoch) return this.masks[tid];
    this.acc = 0;
    this.trie.match(topic, this.accumulate);
    this.maskGen[tid] = this.generation;
    this.maskEpoch[tid] = epoch;
    this.masks[tid] = this.acc;
    return this.acc;
  }

  pattern(from: number, token: number, pattern: string, flags: number, journalEpoch: number, horizon: number): void {
    if (!(flags & PatternFlag.SUB)) return this.release(from, pattern);
    if (!this.on) this.start();
    let p = this.byPattern.get(pattern);
    if (p === undefined) {
      p = new OwnedPattern(pattern, new Array<number>(this.workgroups).fill(0));
      this.byPattern.set(pattern, p);
      this.trie.add(pattern, p);
    }
    if (p.counts[from]++ === 0) {
      p.mask |= 1 << from;
      this.generation++;
    }
    let status: number = PatternStatus.OK;
    let topics = EMPTY;
    if (flags & PatternFlag.RESUME) {
      const missed = this.missedSince(pattern, journalEpoch, horizon);
      if (missed === null) status = PatternStatus.HORIZON_LOST;
      else if (missed.length > 0) topics = Buffer.from(JSON.stringify(missed), 'utf8');
    }
    // In the same step as the interest: every later message of a matching topic reaches `from` after this answer.
    this.subscriber(from).patternDone(this.id, token, status, this.journalEpoch, this.written, topics);
  }

  /** Workgroup `from` restarted: its patterns are gone. */
  forget(from: number): void {
    for (const p of [...this.byPattern.values()]) {
      if (p.counts[from] === 0) continue;
      p.counts[from] = 1;
      this.release(from, p.source);
    }
  }

  private release(from: number, pattern: string): void {
    const p = this.byPattern.get(pattern);
    if (p === undefined || p.counts[from] === 0) return;
    if (--p.counts[from] > 0) return;
    p.mask &= ~(1 << from);
    this.generation++;
    if (p.mask !== 0) return;
    this.byPattern.delete(pattern);
    this.trie.remove(pattern, p);
  }

  private start(): void {
    this.on = true;
    this.jName = new Array<string>(this.capacity).fill('');
    this.jEpoch = new Uint32Array(this.capacity);
    this.jSeq = new Float64Array(this.capacity);
  }

  /**
   * The topics matching `pattern` with messages after the horizon, each with
   * the epoch and the seq before its first such message (a resume
   * position); null when the journal does not reach the horizon.
   */
  private missedSince(pattern: string, journalEpoch: number, horizon: number): [string, number, number][] | null {
    if (journalEpoch !== this.journalEpoch || horizon > this.written || this.written - horizon > this.capacity) return null;
    const compiled = compilePattern(pattern);
    if (typeof compiled === 'string') return null;
    const decided = new Set<string>();
    const out: [string, number, number][] = [];
    let i = (this.head - (this.written - horizon) + this.capacity) % this.capacity;
    for (let k = horizon; k < this.written; k++, i = i + 1 === this.capacity ? 0 : i + 1) {
      const name = this.jName[i];
      if (decided.has(name)) continue;
      decided.add(name);
      if (matchPattern(compiled, name, null)) out.push([name, this.jEpoch[i], this.jSeq[i] - 1]);
    }
    return out;
  }

  private growRows(): void {
    const n = Math.max(1024, this.topics.epoch.length);
    const grow = (a: Uint32Array): Uint32Array<ArrayBuffer> => {
      const b = new Uint32Array(n);
      b.set(a);
      return b;
    };
    this.maskGen = grow(this.maskGen);
    this.maskEpoch = grow(this.maskEpoch);
    this.masks = grow(this.masks);
  }
}
