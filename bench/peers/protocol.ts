// What the peers share: the part of c10m's protocol v1 that the benchmarks
// use (msgpack sub and pub commands, msgpack replies, binary delivery frames
// with the publisher's timestamp), so that benchsub measures every server
// with the same client and the same clock.
import { packr, unpackr } from '../../protocol/codec';
import { encodeBinaryFrame } from '../../protocol/frame';

export interface PeerCommand {
  id: unknown;
  op: string;
  topics?: string[];
  topic?: string;
  data?: unknown;
  ts?: number;
}

export function parseCommand(bytes: Uint8Array): PeerCommand | null {
  try {
    const v = unpackr.unpack(bytes) as PeerCommand;
    return v && typeof v === 'object' && typeof v.op === 'string' ? v : null;
  } catch {
    return null;
  }
}

export function reply(value: Record<string, unknown>): Uint8Array {
  return packr.pack(value);
}

/** The delivery frame of one publish, copied out of the encoder's scratch buffer. */
export function deliveryFrame(topic: string, seq: number, tsMicros: number, data: unknown): Buffer {
  return Buffer.from(encodeBinaryFrame(topic, 0, seq, tsMicros, 0, packr.pack(data)));
}

/** `--port N` from argv (0 by default: any free port). */
export function portArg(): number {
  const i = process.argv.indexOf('--port');
  return i >= 0 ? Number(process.argv[i + 1]) : 0;
}

/** The line the harness waits for. */
export function announce(name: string, port: number): void {
  process.stdout.write(`${JSON.stringify({ msg: 'peer listening', peer: name, port, pid: process.pid })}\n`);
}
