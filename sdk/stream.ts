// One topic's position in its stream (epoch, last seq) as this client has seen it,
// and the rules that turn deliveries and sub replies into "deliver", "drop" or
// "gap". Pure: no sockets, no timers, so its every rule is tested on its own.
//
// Invariants:
// - A delivery is handed to the application at most once: within an epoch, seq
//   only moves forward, and anything at or below the last seq is a duplicate.
// - Nothing is lost silently: every seq that is skipped (a live jump, a resume
//   the server could not recover, an epoch change) produces exactly one Gap.
//
// A sub reply comes after the deliveries the server sent for that
// subscription (replays, snapshot), which the client holds until the reply:
// onSubReply(), then accept() for each held delivery in order, then
// afterHeld().

export interface Gap {
  topic: string;
  /** Why: the server's reason (e.g. "cache_miss", "epoch_mismatch"), or "seq_jump", "epoch_changed", "not_recovered". */
  reason: string;
  /** The epoch the topic is in now. */
  epoch: number;
  /** First missing seq, or null when unknown (the epoch changed). */
  fromSeq: number | null;
  /** Last missing seq (inclusive), or null when unknown. */
  toSeq: number | null;
  /** Where this client was before the gap. */
  lastEpoch: number;
  lastSeq: number;
}

export interface Recovered {
  topic: string;
  epoch: number;
  /** The seq the client resumed from. */
  fromSeq: number;
  /** Messages the server said it replays (0 when nothing was missed). */
  replayed: number;
}

/** A topic entry of a sub reply: `{"epoch":E,"seq":S}` plus, with guaranteed delivery, recovered/reason/replayed. */
export interface SubReplyTopic {
  epoch: number;
  seq: number;
  recovered?: boolean;
  reason?: string;
  replayed?: number;
}

export interface DeliveryPosition {
  epoch: number;
  seq: number;
  replay: boolean;
  snapshot: boolean;
  /** A conflated frame: messages the server skipped before it on purpose (not a gap). */
  conflated?: number;
}

export interface AcceptResult {
  deliver: boolean;
  gap: Gap | null;
}

const DELIVER: AcceptResult = { deliver: true, gap: null };
const DROP: AcceptResult = { deliver: false, gap: null };

export class TopicStream {
  /** Null until the first sub reply (or delivery) gives the topic's epoch. */
  epoch: number | null = null;
  /** Last seq seen (or known to exist at subscription time) in `epoch`. */
  seq = 0;
  /** A retained snapshot is welcome: on a fresh subscription or after an unrecovered gap. */
  private snapshotWelcome = true;
  /**
   * Between a sub reply from another epoch and afterHeld(): where the reply
   * put the topic, how many of its epoch's messages (from seq 1) the server
   * replayed, and the gap for the old epoch while it is still owed.
   */
  private held: { epoch: number; seq: number; replayed: number; owed: string | null } | null = null;

  constructor(readonly topic: string) {}

  /** The position to resume from, or null when the client has none yet. */
  position(): [epoch: number, seq: number] | null {
    return this.epoch === null ? null : [this.epoch, this.seq];
  }

  /**
   * Applies a sub reply. `resumedFrom` is the position sent in the sub
   * command (null for a fresh subscription).
   */
  onSubReply(reply: SubReplyTopic, resumedFrom: [number, number] | null): { gap: Gap | null; recovered: Recovered | null } {
    this.held = null;
    if (resumedFrom === null) {
      this.epoch = reply.epoch;
      this.seq = reply.seq;
      this.snapshotWelcome = true;
      return { gap: null, recovered: null };
    }
    const [lastEpoch, lastSeq] = resumedFrom;
    if (reply.recovered === true) {
      // The server replays lastSeq+1..reply.seq; keep our seq so that the replays pass.
      this.epoch = reply.epoch;
      this.seq = reply.epoch === lastEpoch ? lastSeq : 0;
      this.snapshotWelcome = false;
      return { gap: null, recovered: { topic: this.topic, epoch: reply.epoch, fromSeq: lastSeq, replayed: reply.replayed ?? Math.max(0, reply.seq - lastSeq) } };
    }
    if (reply.epoch === lastEpoch && reply.seq <= lastSeq) {
      // Nothing was published while we were away: nothing to recover.
      this.epoch = lastEpoch;
      this.seq = lastSeq;
      this.snapshotWelcome = false;
      return { gap: null, recovered: { topic: this.topic, epoch: lastEpoch, fromSeq: lastSeq, replayed: 0 } };
    }
    if (reply.epoch === lastEpoch) {
      this.epoch = reply.epoch;
      this.seq = reply.seq;
      this.snapshotWelcome = true;
      return { gap: { topic: this.topic, reason: reply.reason ?? 'not_recovered', epoch: reply.epoch, fromSeq: lastSeq + 1, toSeq: reply.seq, lastEpoch, lastSeq }, recovered: null };
    }
    // Another epoch: the old one's tail is lost. The held deliveries may bring the new epoch from seq 1 (`replayed`
    // of them), after replays of the old one if the epoch changed during the replay: keep the old position so that
    // these pass, and report the gap where the epochs meet (accept), or in afterHeld() if they never do.
    const replayed = reply.replayed ?? 0;
    this.epoch = lastEpoch;
    this.seq = lastSeq;
    this.snapshotWelcome = replayed === 0;
    this.held = { epoch: reply.epoch, seq: reply.seq, replayed, owed: reply.reason ?? 'epoch_changed' };
    return { gap: null, recovered: null };
  }

  /**
   * Call once the deliveries held until the sub reply have gone through
   * accept(). After a reply from another epoch: the gap for the old epoch if
   * no delivery of the new one reported it, or, when the new epoch was
   * replayed but not up to the reply's seq (the server's cache dropped the
   * rest meanwhile), that range; then the reply's position.
   */
  afterHeld(): Gap | null {
    const h = this.held;
    if (h === null) return null;
    this.held = null;
    if (h.owed !== null) {
      const gap = this.epochGap(h.owed, h.epoch);
      this.epoch = h.epoch;
      this.seq = h.seq;
      return gap;
    }
    if (this.epoch !== h.epoch || this.seq >= h.seq) return null;
    const lastSeq = this.seq;
    this.seq = h.seq;
    if (h.replayed === 0) return null; // the old epoch's gap (range unknown) stands for these too
    return { topic: this.topic, reason: 'cache_miss', epoch: h.epoch, fromSeq: lastSeq + 1, toSeq: h.seq, lastEpoch: h.epoch, lastSeq };
  }

  /** The gap from the current position into `epoch` (range unknown): the one a sub reply owes, with its reason, if any. */
  private epochGap(reason: string, epoch: number): Gap {
    const h = this.held;
    const owed = h !== null ? h.owed : null;
    if (h !== null) h.owed = null;
    return { topic: this.topic, reason: owed ?? reason, epoch, fromSeq: null, toSeq: null, lastEpoch: this.epoch as number, lastSeq: this.seq };
  }

  /** Decides what to do with a delivery. Allocates only when it reports a gap. */
  accept(d: DeliveryPosition): AcceptResult {
    if (this.epoch === null) {
      this.epoch = d.epoch;
      this.seq = d.seq;
      this.snapshotWelcome = false;
      return DELIVER;
    }
    if (d.snapshot) {
      if (this.snapshotWelcome) {
        this.snapshotWelcome = false;
        if (d.epoch === this.epoch) {
          if (d.seq > this.seq) this.seq = d.seq;
          return DELIVER;
        }
        // Into another epoch: reported only when a sub reply owes that gap (else it was reported with the reply).
        const gap = this.held !== null && this.held.owed !== null ? this.epochGap('epoch_changed', d.epoch) : null;
        this.epoch = d.epoch;
        this.seq = d.seq;
        return gap === null ? DELIVER : { deliver: true, gap };
      }
      // A snapshot we already have (or have newer): treat it as any other delivery.
    }
    if (d.epoch === this.epoch) {
      if (d.seq <= this.seq) return DROP;
      const expected = this.seq + 1;
      const lastSeq = this.seq;
      this.seq = d.seq;
      this.snapshotWelcome = false;
      if (d.seq === expected) return DELIVER;
      // Conflation skips the `conflated` messages just before this one: a jump they cover is no gap; the rest is.
      const skipped = d.conflated ?? 0;
      if (d.seq - expected <= skipped) return DELIVER;
      return { deliver: true, gap: { topic: this.topic, reason: 'seq_jump', epoch: d.epoch, fromSeq: expected, toSeq: d.seq - 1 - skipped, lastEpoch: d.epoch, lastSeq } };
    }
    const gap = this.epochGap('epoch_changed', d.epoch);
    this.epoch = d.epoch;
    this.seq = d.seq;
    this.snapshotWelcome = false;
    return { deliver: true, gap };
  }
}
