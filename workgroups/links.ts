// The ring side of both ports: this workgroup's rings to every other
// workgroup and its inbound ones. The only module that writes or reads ring
// records (workgroups/records.ts): a port call to another workgroup becomes
// one record here, and a record from another workgroup becomes the same
// port call on this one's local owner or subscriber side.
//
// Concurrency: each ring has one producer (this workgroup, for its outbound
// rings) and one consumer (this workgroup, for its inbound ones); see
// docs/CONCURRENCY.md. A full ring spills, in order, into the sender's queue;
// nothing is ever dropped here.
import type { Logger } from './log';
import type { WorkgroupInit } from '../shm/workgroup-init';
import type { OwnerPort, SubscriberPort } from './ports';
import type { PatternOwnerPort, PatternSubscriberPort } from './pattern-owner';
import { RecordIn, RecordOut, RecordType, asBuffer, writeRecord } from './records';
import { Doorbell } from '../shm/doorbell';
import { RingProducer, flushProducers } from '../shm/ring';
import { RingInbox } from '../shm/ring-inbox';
import { RingSender, SendStatus } from '../shm/ring-sender';
import { Stat } from '../protocol/stats';

/** What a link needs of its workgroup besides the rings. */
export interface LinkHost {
  readonly stats: Float64Array;
  readonly log: Logger;
  /** Counts and logs a failure caught at the edge (rate-limited). */
  failed(cause: string, err: unknown): void;
  /** A ring that was full has room again: paced work waiting for it (replays) may go on. */
  onRingDrain(): void;
  /** Workgroup `from` restarted: it lost its sessions and its topics' state. */
  onHello(from: number): void;
  /** False once the workgroup is closing: records still arriving are dropped. */
  isOpen(): boolean;
}

export class Links {
  readonly id: number;
  readonly count: number;
  private readonly senders: (RingSender | null)[] = [];
  private readonly inbox: RingInbox | null;
  /** The one outbound record, filled by a typed writer and copied into the ring (or a spill buffer) at once. */
  private readonly out = new RecordOut();
  private readonly in = new RecordIn();
  /** Every workgroup's stats block (ours included): their spill gauges. */
  private readonly allStats: Float64Array[];
  private readonly maxRingSpillBytes: number;
  /** By workgroup id: the ring port to it, or, at our own id, the local object (set by attach). */
  private readonly owners: OwnerPort[] = [];
  private readonly subscribers: SubscriberPort[] = [];
  private localOwner: OwnerPort | null = null;
  private localSubscriber: SubscriberPort | null = null;
  private localPatterns: { owner: PatternOwnerPort; subscriber: PatternSubscriberPort } | null = null;
  // Figures read from the senders and the inbox as of the last tick (to add deltas to counters).
  private lastFull = 0;
  private lastWakeups = 0;

  constructor(
    init: WorkgroupInit,
    private readonly host: LinkHost,
  ) {
    this.id = init.id;
    this.count = init.count;
    this.allStats = init.allStats.map((b) => new Float64Array(b));
    this.maxRingSpillBytes = init.options.maxRingSpillBytes;
    const onDrain = (): void => {
      this.updateSpill();
      host.onRingDrain();
    };
    const onFlush = (): void => this.updateSpill();
    for (let to = 0; to < this.count; to++) {
      const sab = init.rings[this.id * this.count + to];
      if (to === this.id || !sab) {
        this.senders.push(null);
      } else {
        // Batched: one doorbell check per turn, not one per record.
        const producer = new RingProducer(sab, 0, new Doorbell(init.doorbells[to]), true);
        asBuffer(producer.data);
        this.senders.push(new RingSender(producer, { maxSpillBytes: init.options.maxRingSpillBytes, onDrain, onFlush }));
      }
      this.owners.push(new RingOwnerPort(this, to));
      this.subscribers.push(new RingSubscriberPort(this, to));
    }
    if (this.count > 1) {
      this.inbox = new RingInbox(new Doorbell(init.doorbells[this.id]), {
        // Records of one turn are delivered together: each subscriber's messages of the turn leave in one write
        // (uWS drains them at the end of the turn), so a longer turn means fewer writes per message.
        maxRecordsPerTurn: 8192,
        onError: (err) => host.failed('ring-record', err),
      });
      for (let from = 0; from < this.count; from++) {
        const sab = init.rings[from * this.count + this.id];
        if (from === this.id || !sab) continue;
        const src = from;
        this.inbox.add(sab, (data, offset, length) => this.onRecord(src, asBuffer(data), offset, length));
      }
    } else {
      this.inbox = null;
    }
  }

  /** The local sides: what a port call to our own id is (a direct call), and where inbound records go. */
  attach(owner: OwnerPort, subscriber: SubscriberPort): void {
    this.localOwner = owner;
    this.localSubscriber = subscriber;
    this.owners[this.id] = owner;
    this.subscribers[this.id] = subscriber;
  }

  /** The local sides of wildcard subscriptions (workgroups/pattern-owner.ts, pattern-subs.ts). */
  attachPatterns(owner: PatternOwnerPort, subscriber: PatternSubscriberPort): void {
    this.localPatterns = { owner, subscriber };
  }

  /** The pattern owner side of workgroup w: ourselves, or its ring. */
  patternOwner(w: number): PatternOwnerPort {
    return w === this.id ? (this.localPatterns as { owner: PatternOwnerPort }).owner : (this.owners[w] as RingOwnerPort);
  }

  /** The pattern subscriber side of workgroup w: ourselves, or its ring. */
  patternSubscriber(w: number): PatternSubscriberPort {
    return w === this.id ? (this.localPatterns as { subscriber: PatternSubscriberPort }).subscriber : (this.subscribers[w] as RingSubscriberPort);
  }

  /** The owner side of workgroup w: ourselves, or its ring. */
  owner(w: number): OwnerPort {
    return this.owners[w];
  }

  /** The subscriber side of workgroup w: ourselves, or its ring. */
  subscriber(w: number): SubscriberPort {
    return this.subscribers[w];
  }

  start(): void {
    this.inbox?.start();
  }

  close(): void {
    flushProducers();
    this.inbox?.close();
    for (const s of this.senders) s?.close();
  }

  /** Tells every other workgroup that this one restarted (HELLO): they forget what they sent it and re-announce their interest. */
  hello(restarts: number): void {
    for (let w = 0; w < this.count; w++) {
      if (w === this.id) continue;
      this.record(RecordType.HELLO, 0, '').aux = restarts;
      this.send(w);
    }
  }

  // ---- replay batches (owner side): paced by ring space ---------------

  /** The ring to w holds records it could not take yet (a replay to w waits for onRingDrain). */
  congested(w: number): boolean {
    const snd = this.senders[w];
    return snd !== null && snd !== undefined && snd.spillRecords > 0;
  }

  /** Largest REPLAY_BATCH worth sending to w: an eighth of its ring, so that a small ring still holds several. */
  maxBatchBytes(w: number, want: number): number {
    return Math.min(want, Math.floor((this.senders[w] as RingSender).producer.maxPayloadBytes / 8));
  }

  // ---- figures --------------------------------------------------------

  /**
   * True while some workgroup's spill queues hold more than
   * --max-ring-spill-bytes: a publish accepted now would only queue more.
   * Reads one gauge per workgroup from shared memory; no message.
   */
  overloaded(): boolean {
    const limit = this.maxRingSpillBytes;
    const all = this.allStats;
    for (let w = 0; w < all.length; w++) if (all[w][Stat.RING_SPILL_BYTES] > limit) return true;
    return false;
  }

  /** Workgroup w's stats block (read only). */
  statsOf(w: number): Float64Array {
    return this.allStats[w];
  }

  /** Once a second: the ring counters and gauges of the stats block. */
  tick(): void {
    const s = this.host.stats;
    let full = 0;
    let spill = 0;
    let peak = 0;
    for (const snd of this.senders) {
      if (snd === null) continue;
      full += snd.fullEvents;
      spill += snd.spillRecords;
      if (snd.peakSpillBytes > peak) peak = snd.peakSpillBytes;
    }
    s[Stat.RING_SPILL_PEAK_BYTES] = peak;
    this.updateSpill();
    s[Stat.RING_FULL_EVENTS] += full - this.lastFull;
    this.lastFull = full;
    s[Stat.RING_SPILL_RECORDS] = spill;
    if (this.inbox !== null) {
      s[Stat.RING_WAKEUPS] += this.inbox.wakeups - this.lastWakeups;
      this.lastWakeups = this.inbox.wakeups;
    }
  }

  /** With the loop stopped (a synchronous wait): retries spilled records and reads inbound ones now; how many were read. */
  pollNow(): number {
    for (const s of this.senders) s?.flushNow();
    flushProducers();
    return this.inbox?.pollNow() ?? 0;
  }

  /** Publishes this workgroup's spill bytes (the gauge other workgroups read before accepting a publish). */
  private updateSpill(): void {
    let bytes = 0;
    for (const snd of this.senders) if (snd !== null) bytes += snd.spillBytes;
    this.host.stats[Stat.RING_SPILL_BYTES] = bytes;
  }

  // ---- records --------------------------------------------------------

  /** The outbound record, cleared and typed. Only this module writes records. */
  record(type: number, flags: number, topic: string): RecordOut {
    const r = this.out;
    r.type = type;
    r.flags = flags;
    r.topic = topic;
    r.token = 0;
    r.epoch = 0;
    r.aux = 0;
    r.seq = 0;
    r.ts = 0;
    r.receivedAt = 0;
    r.data = null;
    return r;
  }

  /** Sends the outbound record to workgroup w. Never loses it: a full ring spills, in order. */
  send(w: number): SendStatus {
    const snd = this.senders[w] as RingSender;
    const r = this.out;
    const status = snd.sendEncoded(r.size(), writeRecord, r);
    r.data = null;
    this.host.stats[Stat.RING_RECORDS_OUT]++;
    if (status !== SendStatus.RING) this.updateSpill();
    return status;
  }

  /** A record from workgroup `from`: the same call on our own side. */
  private onRecord(from: number, b: Buffer, offset: number, length: number): void {
    if (!this.host.isOpen()) return;
    const r = this.in.read(b, offset, length);
    this.host.stats[Stat.RING_RECORDS_IN]++;
    const owner = this.localOwner as OwnerPort;
    const subscriber = this.localSubscriber as SubscriberPort;
    switch (r.type) {
      case RecordType.PUBLISH:
        // aux: the idempotency key's length; the key was written after the topic.
        if (r.aux === 0) return owner.publish(from, r.topic, r.flags, r.data, null, r.ts, r.receivedAt, r.token, null);
        return owner.publish(from, r.topic.slice(0, -r.aux), r.flags, r.data, null, r.ts, r.receivedAt, r.token, r.topic.slice(-r.aux));
      case RecordType.SUB:
        return owner.subscribe(from, r.token, r.topic, r.flags, r.epoch, r.seq);
      case RecordType.INTEREST:
        return owner.interest(from, r.topic, true);
      case RecordType.UNINTEREST:
        return owner.interest(from, r.topic, false);
      case RecordType.DELIVER:
        return subscriber.deliver(r.topic, r.epoch, r.seq, r.ts, r.receivedAt, r.flags, r.data, null);
      case RecordType.ACK:
        return subscriber.ack(r.token, r.epoch, r.seq, r.flags);
      case RecordType.REPLAY:
        return subscriber.replay(r.token, r.topic, r.epoch, r.seq, r.ts, r.flags, r.data);
      case RecordType.REPLAY_BATCH:
        subscriber.replayBatch(r.token, r.topic, r.epoch, r.data, r.aux);
        return;
      case RecordType.SUB_DONE:
        return subscriber.subDone(r.token, r.epoch, r.seq, r.flags, r.aux);
      case RecordType.HELLO:
        return this.host.onHello(from);
      case RecordType.PATTERN:
        return this.localPatterns?.owner.pattern(from, r.token, r.topic, r.flags, r.epoch, r.seq);
      case RecordType.PATTERN_DONE:
        return this.localPatterns?.subscriber.patternDone(from, r.token, r.flags, r.epoch, r.seq, r.data);
      default:
        this.host.stats[Stat.INTERNAL_ERRORS]++;
        this.host.log.error({ from, type: r.type }, 'unknown ring record type');
    }
  }
}

/** The owner side of another workgroup: each call one record on our ring to it. */
class RingOwnerPort implements OwnerPort, PatternOwnerPort {
  constructor(
    private readonly links: Links,
    private readonly to: number,
  ) {}

  publish(_from: number, topic: string, flags: number, data: Uint8Array, _json: string | null, tsMicros: number, receivedAtMicros: number, token: number, idempotencyKey: string | null = null): void {
    const r = this.links.record(RecordType.PUBLISH, flags, idempotencyKey === null ? topic : topic + idempotencyKey);
    if (idempotencyKey !== null) r.aux = idempotencyKey.length;
    r.token = token;
    r.ts = tsMicros;
    r.receivedAt = receivedAtMicros;
    r.data = data;
    this.links.send(this.to);
  }

  subscribe(_from: number, token: number, topic: string, flags: number, resumeEpoch: number, resumeSeq: number): void {
    const r = this.links.record(RecordType.SUB, flags, topic);
    r.token = token;
    r.epoch = resumeEpoch;
    r.seq = resumeSeq;
    this.links.send(this.to);
  }

  interest(_from: number, topic: string, on: boolean): void {
    this.links.record(on ? RecordType.INTEREST : RecordType.UNINTEREST, 0, topic);
    this.links.send(this.to);
  }

  pattern(_from: number, token: number, pattern: string, flags: number, journalEpoch: number, horizon: number): void {
    const r = this.links.record(RecordType.PATTERN, flags, pattern);
    r.token = token;
    r.epoch = journalEpoch;
    r.seq = horizon;
    this.links.send(this.to);
  }
}

/** The subscriber side of another workgroup: each call one record on our ring to it. */
class RingSubscriberPort implements SubscriberPort, PatternSubscriberPort {
  constructor(
    private readonly links: Links,
    private readonly to: number,
  ) {}

  deliver(topic: string, epoch: number, seq: number, tsMicros: number, receivedAtMicros: number, msgpack: number, data: Uint8Array, _json: string | null): void {
    const r = this.links.record(RecordType.DELIVER, msgpack, topic);
    r.epoch = epoch;
    r.seq = seq;
    r.ts = tsMicros;
    r.receivedAt = receivedAtMicros;
    r.data = data;
    this.links.send(this.to);
  }

  ack(token: number, epoch: number, seq: number, status: number): void {
    const r = this.links.record(RecordType.ACK, status, '');
    r.token = token;
    r.epoch = epoch;
    r.seq = seq;
    this.links.send(this.to);
  }

  replay(token: number, topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): void {
    const r = this.links.record(RecordType.REPLAY, flags, topic);
    r.token = token;
    r.epoch = epoch;
    r.seq = seq;
    r.ts = tsMicros;
    r.data = data;
    this.links.send(this.to);
  }

  replayBatch(token: number, topic: string, epoch: number, data: Uint8Array, count: number): boolean {
    const r = this.links.record(RecordType.REPLAY_BATCH, 0, topic);
    r.token = token;
    r.epoch = epoch;
    r.aux = count;
    r.data = data;
    return this.links.send(this.to) === SendStatus.RING;
  }

  subDone(token: number, epoch: number, seq: number, status: number, replayed: number): void {
    const r = this.links.record(RecordType.SUB_DONE, status, '');
    r.token = token;
    r.epoch = epoch;
    r.seq = seq;
    r.aux = replayed;
    this.links.send(this.to);
  }

  patternDone(_owner: number, token: number, status: number, journalEpoch: number, position: number, topics: Uint8Array): void {
    const r = this.links.record(RecordType.PATTERN_DONE, status, '');
    r.token = token;
    r.epoch = journalEpoch;
    r.seq = position;
    r.data = topics.length > 0 ? topics : null;
    this.links.send(this.to);
  }
}
