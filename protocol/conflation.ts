// Conflation: a subscription that asks for at most one message per interval
// of each of its topics (`"conflate": MS` in a sub) gets the latest message
// of each interval, and every such frame says how many messages of the
// topic were skipped before it (since the previous frame of the interval).
// The seq of a conflated frame is the real seq of the message it carries:
// a client sees the jump, and the skipped count explains it (sdk/stream.ts
// reports a gap only for what the count does not cover).
//
// The frames: JSON adds "conflated":N after "ts"; binary sets
// FrameFlag.CONFLATED and puts N (uint32) between the 24-byte header and
// the topic. Only sessions that asked for conflation get either.
import { FRAME_HEADER_BYTES, FrameFlag, writeBinaryHeader } from './frame';

/** Shortest and longest interval a subscription may ask for, in milliseconds. */
export const MIN_CONFLATE_MS = 10;
export const MAX_CONFLATE_MS = 60_000;

/** A conflated binary frame's header: the delivery header, then the skipped count. */
export const CONFLATED_HEADER_BYTES = FRAME_HEADER_BYTES + 4;

/** Why `v` is not a conflation interval (an integer of MIN..MAX ms), or null. Absent and null mean none (0). */
export function conflateError(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_CONFLATE_MS || v > MAX_CONFLATE_MS) {
    return `conflate must be a whole number of milliseconds from ${MIN_CONFLATE_MS} to ${MAX_CONFLATE_MS}`;
  }
  return null;
}

/** The JSON frame of a conflated delivery: `skipped` messages of the topic came before it and were not sent. */
export function encodeConflatedJsonFrame(topic: string, epoch: number, seq: number, tsMicros: number, flags: number, skipped: number, dataJson: string): string {
  let extra = '';
  if (flags & FrameFlag.REPLAY) extra += ',"replay":true';
  return `{"op":"msg","topic":"${topic}","epoch":${epoch >>> 0},"seq":${seq},"ts":${tsMicros},"conflated":${skipped}${extra},"data":${dataJson}}`;
}

let scratch = new Uint8Array(64 * 1024);
let scratchView = new DataView(scratch.buffer);

/**
 * The binary frame of a conflated delivery, in a module-level scratch
 * buffer: valid until the next call (uWS copies what it is handed).
 */
export function encodeConflatedBinaryFrame(topic: string, epoch: number, seq: number, tsMicros: number, flags: number, skipped: number, data: Uint8Array): Uint8Array {
  const total = CONFLATED_HEADER_BYTES + topic.length + data.length;
  if (total > scratch.length) {
    scratch = new Uint8Array(Math.max(total, scratch.length * 2));
    scratchView = new DataView(scratch.buffer);
  }
  // The header with the topic where the count goes, then the topic moved past the count.
  writeBinaryHeader(scratch, scratchView, 0, topic, epoch, seq, tsMicros, flags | FrameFlag.CONFLATED);
  let p = CONFLATED_HEADER_BYTES;
  for (let i = 0; i < topic.length; i++) scratch[p++] = topic.charCodeAt(i);
  scratchView.setUint32(FRAME_HEADER_BYTES, Math.min(skipped, 0xffffffff));
  scratch.set(data, p);
  return scratch.subarray(0, total);
}
