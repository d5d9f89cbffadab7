// Turns socket frames into replies and deliveries, and commands into frames,
// for both encodings of protocol v1. Imports only protocol/ (and msgpackr
// through protocol/codec.ts, whose browser build it gets from the bundler).
import { packr, unpackr } from '../protocol/codec';
import type { Encoding } from './encoding';
import { FrameFlag, decodeBinaryFrame, isBinaryFrame } from '../protocol/frame';

/** A message of a topic, as handed to subscribers. */
export interface Message<T = unknown> {
  topic: string;
  data: T;
  epoch: number;
  seq: number;
  /** Publish time, microseconds since the Unix epoch (the publisher's, or the server's receive time). */
  tsMicros: number;
  /** Replayed from the server's cache on resume. */
  replay: boolean;
  /** The topic's retained message, sent first on subscribe. */
  snapshot: boolean;
  /** A conflated subscription (conflateMs): messages of the topic skipped before this one; else 0. */
  conflated: number;
}

/** A reply to a command: `{"id":..,"ok":true,...}` or `{"id":..,"error":{"code","message"}}`. */
export interface Reply {
  id?: unknown;
  ok?: boolean;
  error?: { code: string; message: string };
  [field: string]: unknown;
}

export type Incoming = { kind: 'msg'; msg: Message } | { kind: 'reply'; reply: Reply } | { kind: 'bad'; why: string };

/** Decodes one frame. Never throws: a frame it cannot read becomes { kind: 'bad' }. */
export function decodeIncoming(encoding: Encoding, data: unknown): Incoming {
  try {
    if (typeof data === 'string') {
      if (encoding !== 'json') return { kind: 'bad', why: 'text frame on a msgpack session' };
      const m = JSON.parse(data);
      if (m === null || typeof m !== 'object') return { kind: 'bad', why: 'frame is not a map' };
      if (m.op === 'msg') {
        return {
          kind: 'msg',
          msg: { topic: m.topic, data: m.data, epoch: m.epoch, seq: m.seq, tsMicros: m.ts, replay: m.replay === true, snapshot: m.snapshot === true, conflated: m.conflated ?? 0 },
        };
      }
      return { kind: 'reply', reply: m as Reply };
    }
    const bytes = toBytes(data);
    if (bytes === null) return { kind: 'bad', why: 'frame of an unknown type' };
    if (isBinaryFrame(bytes)) {
      const f = decodeBinaryFrame(bytes);
      return {
        kind: 'msg',
        msg: {
          topic: f.topic,
          data: unpackr.unpack(f.payload),
          epoch: f.epoch,
          seq: f.seq,
          tsMicros: f.tsMicros,
          replay: (f.flags & FrameFlag.REPLAY) !== 0,
          snapshot: (f.flags & FrameFlag.SNAPSHOT) !== 0,
          conflated: f.conflated,
        },
      };
    }
    const m = unpackr.unpack(bytes);
    if (m === null || typeof m !== 'object') return { kind: 'bad', why: 'frame is not a map' };
    return { kind: 'reply', reply: m as Reply };
  } catch (err) {
    return { kind: 'bad', why: `undecodable frame: ${(err as Error).message}` };
  }
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // ws's binaryType 'fragments' is never set by us; a Blob would mean binaryType was not applied.
  return null;
}

/** Encodes a command in the session's encoding. */
export function encodeCommand(encoding: Encoding, cmd: Record<string, unknown>): string | Uint8Array {
  return encoding === 'json' ? JSON.stringify(cmd) : packr.pack(cmd);
}
