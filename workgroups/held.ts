// Delivery frames held until the end of the event-loop turn (workgroups/
// delivery.ts). A publish handled inside a uWS message handler has the
// publisher's socket corked; uWS then cannot cork the subscribers' sockets
// while it drains them (it drains a subscriber inside app.publish once 32
// messages wait for it), and writes every message with its own syscall. Held
// frames are published after the poll phase, with no socket corked: uWS
// corks each subscriber and writes its messages together.
import { FRAME_HEADER_BYTES, writeBinaryHeader } from '../protocol/frame';

/** Frames one set holds before they go at once, whatever the turn (memory bound). */
export const HELD_MAX_FRAMES = 8192;
export const HELD_MAX_BYTES = 4 * 1024 * 1024;

/** One set of held frames: uWS keys, and each frame as JSON text or as bytes in one buffer. */
export class HeldFrames {
  count = 0;
  /** Bytes used in `bytes` (binary frames, one after the other). */
  used = 0;
  readonly keys: string[] = [];
  /** The JSON frame, or null for a binary frame (bytes[previous end, ends[i])). */
  readonly texts: (string | null)[] = [];
  ends = new Int32Array(256);
  /** The message's receive time (µs) on the last frame of each message (its latency is recorded when it goes), -1 on the others. */
  receivedAt = new Float64Array(256);
  bytes = new Uint8Array(64 * 1024);
  private view = new DataView(this.bytes.buffer);

  get full(): boolean {
    return this.count >= HELD_MAX_FRAMES || this.used >= HELD_MAX_BYTES;
  }

  private entry(key: string, text: string | null, receivedAt: number): void {
    const i = this.count++;
    if (i === this.ends.length) {
      const ends = new Int32Array(i * 2);
      ends.set(this.ends);
      this.ends = ends;
      const at = new Float64Array(i * 2);
      at.set(this.receivedAt);
      this.receivedAt = at;
    }
    this.keys[i] = key;
    this.texts[i] = text;
    this.ends[i] = this.used;
    this.receivedAt[i] = receivedAt;
  }

  addText(key: string, text: string, receivedAt: number): void {
    this.entry(key, text, receivedAt);
  }

  /** Encodes the binary delivery frame (protocol/frame.ts) straight into the held bytes. */
  addBinary(key: string, topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array, receivedAt: number): void {
    const total = FRAME_HEADER_BYTES + topic.length + data.length;
    if (this.used + total > this.bytes.length) {
      const bytes = new Uint8Array(Math.max(this.used + total, this.bytes.length * 2));
      bytes.set(this.bytes.subarray(0, this.used));
      this.bytes = bytes;
      this.view = new DataView(bytes.buffer);
    }
    const p = writeBinaryHeader(this.bytes, this.view, this.used, topic, epoch, seq, tsMicros, flags);
    this.bytes.set(data, p);
    this.used += total;
    this.entry(key, null, receivedAt);
    this.ends[this.count - 1] = this.used;
  }

  /** Forgets every frame (their text is let go; the buffers are kept for the next turn). */
  clear(): void {
    for (let i = 0; i < this.count; i++) this.texts[i] = null;
    this.count = 0;
    this.used = 0;
  }
}
