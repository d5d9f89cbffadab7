// The fields of a publish, checked one way for every way in: a WebSocket
// `pub` (JSON or msgpack, fast or general path) and an HTTP publish body.
import { ENCODING_MSGPACK, type EncodingId } from './encoding';
import { checkJsonData, checkMsgpackData } from './data';
import { ErrorCode, ProtocolError } from './errors';
import { idempotencyKeyError } from './idempotency';
import { topicError } from './topic';

export interface PublishFields {
  topic: string;
  /** The decoded data, or (msgpack fast path) the same view as raw. */
  data: unknown;
  retain: boolean;
  /** Publish time in microseconds given by the publisher, else null. */
  ts: number | null;
  /** A repeated key within the window is not published again (protocol/idempotency.ts); null: none. */
  idempotencyKey: string | null;
  /** msgpack: the data as the publisher encoded it (a view into the frame), when it was found; else null. */
  raw: Uint8Array | null;
}

/**
 * Checks topic, data (present, and carried by both encodings: protocol/data.ts),
 * retain (boolean, or absent/null), ts (a non-negative safe integer of
 * microseconds, or absent/null) and idempotencyKey (protocol/idempotency.ts). `raw`: the msgpack bytes of data when the
 * caller has them; they are what is checked (they are what subscribers get).
 * The fields go into `out` (a WebSocket pub command, or an object the HTTP
 * path reuses: no object of its own per publish); returns null, or the
 * error (with no id: the caller adds the command's).
 */
export function validatePublishFields(v: Record<string, unknown>, raw: Uint8Array | null, encoding: EncodingId, out: PublishFields): ProtocolError | null {
  const err = topicError(v.topic);
  if (err !== null) return new ProtocolError(ErrorCode.BAD_TOPIC, err);
  if (!('data' in v) || v.data === undefined) return new ProtocolError(ErrorCode.BAD_DATA, 'a publish needs data');
  const msgpackRaw = encoding === ENCODING_MSGPACK ? raw : null;
  const dataErr = msgpackRaw !== null ? checkMsgpackData(msgpackRaw) : checkJsonData(v.data);
  if (dataErr !== null) return new ProtocolError(ErrorCode.BAD_DATA, dataErr);
  let retain = false;
  if (v.retain !== undefined && v.retain !== null) {
    if (typeof v.retain !== 'boolean') return new ProtocolError(ErrorCode.BAD_REQUEST, 'retain must be a boolean');
    retain = v.retain;
  }
  let ts: number | null = null;
  if (v.ts !== undefined && v.ts !== null) {
    if (typeof v.ts !== 'number' || !Number.isSafeInteger(v.ts) || v.ts < 0) return new ProtocolError(ErrorCode.BAD_REQUEST, 'ts must be a non-negative integer (microseconds)');
    ts = v.ts;
  }
  const keyErr = idempotencyKeyError(v.idempotencyKey);
  if (keyErr !== null) return new ProtocolError(ErrorCode.BAD_REQUEST, keyErr);
  out.topic = v.topic as string;
  out.data = v.data;
  out.retain = retain;
  out.ts = ts;
  out.idempotencyKey = (v.idempotencyKey as string | null | undefined) ?? null;
  out.raw = msgpackRaw;
  return null;
}
