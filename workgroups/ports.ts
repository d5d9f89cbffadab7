// The two ports between the parts of a workgroup, and between workgroups.
// Every step of a publish or a subscription is written once, against these:
// when the other side is this workgroup the port is the object itself (a
// direct call); when it is another workgroup, the port is its ring link
// (workgroups/links.ts), which writes the call as a record and, on the far
// side, reads it back into the same call. Rings are FIFO per ordered pair of
// workgroups, so calls from one workgroup to another arrive in the order
// they were made; every rule below that says "before" relies on it.

/**
 * What a topic's owner is asked: the engine contract's side of a workgroup
 * (docs/ARCHITECTURE.md). `from` is the asking workgroup's id: the owner
 * answers it through that workgroup's SubscriberPort.
 */
export interface OwnerPort {
  /**
   * Sequence one message: the topic's next seq in its current epoch, the
   * cache (and the snapshot when RecordFlag.RETAIN), then a deliver to every
   * workgroup with interest, then, when token is not 0, the ack to `from`
   * (after the delivers: a publisher that also subscribes sees its message
   * before its ack). A topic the owner cannot take (over --max-topics) is
   * refused through the ack, and only when there is a token to answer.
   * idempotencyKey: a key seen for the topic within the window is not
   * sequenced again: the ack (AckStatus.DUPLICATE) carries the first one's
   * (epoch, seq), checked in the same step that would assign the seq.
   */
  publish(from: number, topic: string, flags: number, data: Uint8Array, json: string | null, tsMicros: number, receivedAtMicros: number, token: number, idempotencyKey?: string | null): void;
  /**
   * A session of `from` subscribes (RecordFlag.RESUME: from epoch and seq).
   * The owner marks `from`'s interest, replays what the resume misses (from
   * another epoch: the current epoch from seq 1, while the history still
   * holds it) or the snapshot, and ends with subDone at the topic's current
   * seq (status and the number replayed): every deliver that follows has a
   * higher seq, so the subscriber's workgroup subscribes the session exactly
   * then, with no gap and no duplicate.
   */
  subscribe(from: number, token: number, topic: string, flags: number, resumeEpoch: number, resumeSeq: number): void;
  /** `from` has (or no longer has) sessions subscribed to the topic. */
  interest(from: number, topic: string, on: boolean): void;
}

/** What a topic's owner sends to a workgroup with subscribers. */
export interface SubscriberPort {
  /** One sequenced message for this workgroup's subscribers (data in the publisher's encoding; json: its text when the publisher sent JSON, else null). */
  deliver(topic: string, epoch: number, seq: number, tsMicros: number, receivedAtMicros: number, msgpack: number, data: Uint8Array, json: string | null): void;
  /** The publish with this token got (epoch, seq), or was refused (AckStatus). */
  ack(token: number, epoch: number, seq: number, status: number): void;
  /** One message for the pending subscription `token`: replayed, or (RecordFlag.RETAIN) the snapshot. */
  replay(token: number, topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): void;
  /**
   * `count` consecutive replayed messages of the pending subscription
   * `token`, laid out by writeReplayEntry (workgroups/records.ts), written to
   * the session under one cork. Returns false when the batch had to wait in a
   * spill queue: the caller pauses until the ring drains.
   */
  replayBatch(token: number, topic: string, epoch: number, data: Uint8Array, count: number): boolean;
  /** The subscription `token` is in effect from (epoch, seq) on (SubStatus says how its resume went), after `replayed` messages. */
  subDone(token: number, epoch: number, seq: number, status: number, replayed: number): void;
}

/** A publish on its way to the topic's owner: data in the publisher's encoding. */
export interface PublishRequest {
  topic: string;
  /** RecordFlag.MSGPACK and RecordFlag.RETAIN. */
  flags: number;
  data: Uint8Array;
  /** The data as JSON text when the publisher sent JSON (saves a decode on the owner). */
  json: string | null;
  tsMicros: number;
  receivedAtMicros: number;
  /** protocol/idempotency.ts; null: none. */
  idempotencyKey: string | null;
}
