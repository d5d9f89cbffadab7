// The owner's side of a resume: cached messages replayed to the pending
// subscription of a session, paced so that no replay holds the loop or a
// ring. A resume in the topic's epoch replays what follows its seq; one from
// another epoch (its history is gone: a restarted node or owner) replays the
// current epoch from seq 1 while the cache still holds it, and ends
// EPOCH_MISMATCH (resumeStart below). Each job goes through these states:
//
//   RUNNABLE ──turn──▶ RUNNABLE (more to send; budget or ring room ran out)
//      │  ▲                 │
//      │  └──ring drains── WAITING_FOR_RING (its ring spilled)
//      └──cursor reaches the topic's seq──▶ DONE(job.status: recovered, or epoch_mismatch)
//         or the cache dropped what it has not sent ──▶ DONE(cache_miss, or epoch_mismatch)
//         or the topic's history changed ──▶ RUNNABLE in the new epoch from seq 1 if cached,
//                                            else DONE(epoch_mismatch)
//
// DONE is the owner's subDone, in the same turn as the last replayed message,
// so every deliver after it has a higher seq. Messages published while a job
// runs are replayed too. Replays to this workgroup go straight into the
// session's socket under one cork per turn; to another workgroup, in
// REPLAY_BATCH records of up to REPLAY_BATCH_BYTES.
import type { Links } from './links';
import type { SubscriberPort } from './ports';
import { REPLAY_ENTRY_HEADER, RecordFlag, SubStatus, writeReplayEntry } from './records';
import { CacheFlag, type MessageCache } from './cache';
import type { TopicTable } from './topics';

/** Cached messages sent per event-loop turn over all replays, and per replay per turn. */
const REPLAY_RECORDS_PER_TURN = 8192;
const REPLAY_RECORDS_PER_JOB = 4096;
/** A replay to another workgroup goes in REPLAY_BATCH records of about this many bytes. */
const REPLAY_BATCH_BYTES = 32 * 1024;

/** A resume being replayed to workgroup `to`, from the message after `cursor`. */
export interface ReplayJob {
  to: number;
  token: number;
  topic: string;
  tid: number;
  epoch: number;
  /** The last seq sent (0: the epoch from its start). */
  cursor: number;
  /** Messages sent in `epoch` (those of an epoch the job left are not counted). */
  replayed: number;
  /** What the job ends with when it reaches the topic's seq: RECOVERED, or EPOCH_MISMATCH (the client resumed from another epoch). */
  status: number;
}

/**
 * The status a resume from (resumeEpoch, resumeSeq) has on a topic at
 * (epoch, seq) whose history is `cache`: RECOVERED when every message after
 * resumeSeq is there to replay (or none is missing), else why not.
 */
export function resumeStatus(cache: Pick<MessageCache, 'covers'>, tid: number, epoch: number, seq: number, resumeEpoch: number, resumeSeq: number): number {
  if (resumeEpoch !== epoch) return SubStatus.EPOCH_MISMATCH;
  if (resumeSeq > seq) return SubStatus.UNKNOWN_POSITION;
  if (resumeSeq === seq || cache.covers(tid, resumeSeq)) return SubStatus.RECOVERED;
  return SubStatus.CACHE_MISS;
}

/**
 * Where the replay of a resume with `status` (resumeStatus) starts: the seq
 * it sends the messages after, or -1 when it sends none. RECOVERED replays
 * from the client's seq; EPOCH_MISMATCH replays the current epoch from seq 1
 * when the cache still holds seq 1: the client's old epoch is lost, but not
 * what the new one already has (a node restarted, then took publishes before
 * its clients came back).
 */
export function resumeStart(cache: Pick<MessageCache, 'covers'>, tid: number, seq: number, status: number, resumeSeq: number): number {
  if (status === SubStatus.RECOVERED) return resumeSeq < seq ? resumeSeq : -1;
  if (status === SubStatus.EPOCH_MISMATCH) return seq > 0 && cache.covers(tid, 0) ? 0 : -1;
  return -1;
}

/** The status of a job that cannot go on because the cache dropped what it has not sent. */
function unrecovered(job: ReplayJob): number {
  return job.status === SubStatus.RECOVERED ? SubStatus.CACHE_MISS : job.status;
}

/** What a replay needs of its owner. */
export interface ReplayOwner {
  /** A row for a topic whose row went meanwhile (a new history). */
  newTopic(topic: string): number;
  /** The job ended (SubStatus): count it, and the subscription's subDone. */
  finish(job: ReplayJob, tid: number, status: number): void;
}

/** What a replay needs of the rings: the subscriber side of each workgroup, and whether its ring has room. */
export type ReplayLinks = Pick<Links, 'subscriber' | 'congested' | 'maxBatchBytes'>;

/** How the messages of a replay to this workgroup reach the session's socket. */
export interface LocalReplay {
  /** Runs `write` corked on the socket of the pending subscription `token`; false (nothing run) when it is gone. */
  corked(token: number, write: () => void): boolean;
}

export class Replays {
  private jobs: (ReplayJob | null)[] = [];
  private scheduled = false;
  private closed = false;
  /** Round robin: the job the next turn starts with. */
  private start = 0;
  // The job being visited by the cache walk, and its limits for this turn (one object: no closure per job).
  private readonly target: { job: ReplayJob | null; left: number; blocked: boolean; tid: number; sent: number } = { job: null, left: 0, blocked: false, tid: 0, sent: 0 };
  /** Staging for REPLAY_BATCH records; copied into the ring (or a spill buffer) when sent. */
  private batch = Buffer.allocUnsafe(REPLAY_BATCH_BYTES + 1024);
  private batchUsed = 0;
  private batchCount = 0;
  private batchTarget = REPLAY_BATCH_BYTES;
  private readonly pumpBound = (): void => this.pump();

  constructor(
    private readonly id: number,
    private readonly topics: TopicTable,
    private readonly cache: MessageCache,
    private readonly links: ReplayLinks,
    private readonly owner: ReplayOwner,
    private readonly local: LocalReplay,
    private readonly onError: (err: unknown) => void,
  ) {}

  get size(): number {
    return this.jobs.length;
  }

  add(job: ReplayJob): void {
    this.jobs.push(job);
    this.schedule();
  }

  /** Workgroup w restarted: its sessions, and the subscriptions we were replaying to, are gone. */
  forget(w: number): void {
    if (this.jobs.length > 0) this.jobs = this.jobs.filter((j) => j !== null && j.to !== w);
  }

  /** A turn soon, if there is work (also when a ring drained). */
  schedule(): void {
    if (this.scheduled || this.closed || this.jobs.length === 0) return;
    this.scheduled = true;
    setImmediate(this.pumpBound);
  }

  close(): void {
    this.closed = true;
  }

  private pump(): void {
    this.scheduled = false;
    if (this.closed) return;
    try {
      this.turn();
    } catch (err) {
      // A turn runs from setImmediate: nothing above it would catch this, and the workgroup would end.
      // The jobs' subscriptions then fail with OWNER_TIMEOUT at their workgroup: reported, not silent.
      this.onError(err);
      this.jobs = [];
    }
  }

  /**
   * One turn: each runnable job sends up to REPLAY_RECORDS_PER_JOB cached
   * messages (REPLAY_RECORDS_PER_TURN over all), stopping early when its
   * ring spills; a job that reaches an end is finished by the owner.
   */
  private turn(): void {
    const jobs = this.jobs;
    const t = this.topics;
    let budget = REPLAY_RECORDS_PER_TURN;
    let runnable = false;
    let finished = 0;
    const n = jobs.length;
    const start = this.start < n ? this.start : 0;
    let stoppedAt = -1;
    for (let k = 0; k < n; k++) {
      const i = start + k < n ? start + k : start + k - n;
      const job = jobs[i] as ReplayJob;
      if (job.to !== this.id && this.links.congested(job.to)) continue; // WAITING_FOR_RING: the drain reschedules
      if (budget === 0) {
        if (stoppedAt < 0) stoppedAt = i;
        runnable = true;
        continue;
      }
      let tid = job.tid;
      let status = -1;
      if (t.name(tid) !== job.topic) {
        // The row went (the subscriber's workgroup gave up on this sub and the topic idled out): a new history.
        tid = this.owner.newTopic(job.topic);
        job.tid = tid;
      }
      if (t.epoch[tid] !== job.epoch && !this.restartInEpoch(job, tid)) status = SubStatus.EPOCH_MISMATCH;
      else if (job.cursor >= t.seq[tid]) status = job.status;
      else if (!this.cache.covers(tid, job.cursor)) status = unrecovered(job);
      else {
        const rp = this.target;
        rp.job = job;
        rp.tid = tid;
        rp.left = Math.min(budget, REPLAY_RECORDS_PER_JOB);
        rp.blocked = false;
        rp.sent = 0;
        if (job.to === this.id) {
          // Straight into the session's socket: one cork for the whole chunk (one write, not one per message).
          // A subscription that is gone still walks its messages (each dropped) so that the job ends.
          if (!this.local.corked(job.token, this.corkedWalk)) this.corkedWalk();
        } else {
          this.batchTarget = this.links.maxBatchBytes(job.to, REPLAY_BATCH_BYTES);
          rp.sent = this.cache.forEachRaw(tid, job.cursor, this.visit);
          if (!this.flush(job)) rp.blocked = true;
        }
        const sent = rp.sent;
        budget -= sent;
        rp.job = null;
        if (sent === 0) status = unrecovered(job);
        else if (job.cursor >= t.seq[tid]) status = job.status;
        else if (!rp.blocked) runnable = true;
      }
      if (status >= 0) {
        this.owner.finish(job, tid, status);
        jobs[i] = null;
        finished++;
      }
    }
    // Next turn starts at the first job this one had no budget for (its index once the finished ones are gone).
    let nextStart = stoppedAt < 0 ? 0 : stoppedAt;
    for (let i = 0; i < stoppedAt; i++) if (jobs[i] === null) nextStart--;
    this.start = nextStart;
    if (finished > 0) this.jobs = jobs.filter((j) => j !== null);
    if (runnable) this.schedule();
  }

  /**
   * The topic's history changed under the job (a new epoch, maybe a new
   * row): the job goes on in the new epoch from seq 1, as a resume from
   * another epoch would, when the cache holds it; false when it does not
   * (the job ends EPOCH_MISMATCH). Either way its workgroup keeps its
   * interest: the subscription is still pending there.
   */
  private restartInEpoch(job: ReplayJob, tid: number): boolean {
    const t = this.topics;
    t.interest[tid] |= 1 << job.to;
    job.epoch = t.epoch[tid];
    job.replayed = 0;
    job.status = SubStatus.EPOCH_MISMATCH;
    job.cursor = resumeStart(this.cache, tid, t.seq[tid], SubStatus.EPOCH_MISMATCH, 0);
    return job.cursor >= 0;
  }

  private readonly corkedWalk = (): void => {
    const rp = this.target;
    rp.sent = this.cache.forEachRaw(rp.tid, (rp.job as ReplayJob).cursor, this.visit);
  };

  /** The cache walk's visitor: one cached message, to the local session or into the batch. No allocation but the batch's growth. */
  private readonly visit = (seq: number, ts: number, flags: number, arena: Uint8Array, offset: number, length: number): boolean => {
    const rp = this.target;
    const job = rp.job as ReplayJob;
    const f = flags & CacheFlag.MSGPACK ? RecordFlag.MSGPACK : 0;
    const data = arena.subarray(offset, offset + length);
    if (job.to === this.id) {
      this.links.subscriber(this.id).replay(job.token, job.topic, job.epoch, seq, ts, f, data);
    } else {
      // Into the batch; a full batch goes out as one REPLAY_BATCH record.
      const need = REPLAY_ENTRY_HEADER + length;
      if (this.batchUsed > 0 && this.batchUsed + need > this.batch.length && !this.flush(job)) rp.blocked = true;
      if (need > this.batch.length) this.batch = Buffer.allocUnsafe(need);
      this.batchUsed += writeReplayEntry(this.batch, this.batchUsed, seq, ts, f, data);
      this.batchCount++;
      if (this.batchUsed >= this.batchTarget && !this.flush(job)) rp.blocked = true;
    }
    job.cursor = seq;
    job.replayed++;
    return --rp.left > 0 && !rp.blocked;
  };

  /** Sends the staged batch to the job's workgroup; false when it had to spill (the job waits for the ring). */
  private flush(job: ReplayJob): boolean {
    if (this.batchCount === 0) return true;
    const sub: SubscriberPort = this.links.subscriber(job.to);
    const data = this.batch.subarray(0, this.batchUsed);
    const count = this.batchCount;
    this.batchUsed = 0;
    this.batchCount = 0;
    return sub.replayBatch(job.token, job.topic, job.epoch, data, count);
  }
}
