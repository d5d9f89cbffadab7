// A WebSocket client on a bare TCP socket (node:net): it performs the
// handshake itself and parses frames itself, so that a test can stop
// reading (pause()) and see exactly how the server ends the connection:
// a close frame and its code, a FIN, or a reset.
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export interface RawFrame {
  opcode: number;
  /** Text frames only (other payloads are not kept). */
  text: string | null;
}

export class RawWebSocket {
  /** Text frames received, in order (parsed JSON). */
  readonly messages: Record<string, unknown>[] = [];
  /** Frames of every kind received (counts only; payloads of text frames are in messages). */
  frames = 0;
  bytesReceived = 0;
  /** The code of the server's close frame, once one is parsed. */
  closeCode: number | null = null;
  closeReason = '';
  /** The socket ended (FIN from the server). */
  ended = false;
  /** The socket is closed (for any reason). */
  closed = false;
  error: NodeJS.ErrnoException | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      });
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err;
      this.wake();
    });
  }

  /** Connects, sends the upgrade request and waits for the 101. */
  static open(port: number, path: string, opts: { host?: string; localAddress?: string; timeoutMs?: number } = {}): Promise<RawWebSocket> {
    const host = opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, localAddress: opts.localAddress });
      const ws = new RawWebSocket(socket);
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('raw WebSocket handshake timed out'));
      }, opts.timeoutMs ?? 10_000);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        clearTimeout(timer);
        const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
        if (!/^HTTP\/1\.1 101 /.test(status)) {
          socket.destroy();
          return reject(new Error(`upgrade refused: ${status}`));
        }
        socket.on('data', (c: Buffer) => ws.onData(c));
        const rest = head.subarray(end + 4);
        if (rest.length > 0) ws.onData(rest);
        resolve(ws);
      };
      socket.on('data', onData);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
    });
  }

  /** Sends one masked text frame (clients must mask). */
  sendText(text: string): void {
    const payload = Buffer.from(text, 'utf8');
    const mask = randomBytes(4);
    let header: Buffer;
    if (payload.length < 126) {
      header = Buffer.from([0x81, 0x80 | payload.length]);
    } else if (payload.length < 65536) {
      header = Buffer.alloc(4);
      header[0] = 0x81;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(payload.length, 2);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x81;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(payload.length), 2);
    }
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    this.socket.write(Buffer.concat([header, mask, payload]));
  }

  sendJson(cmd: Record<string, unknown>): void {
    this.sendText(JSON.stringify(cmd));
  }

  /** Stops reading: the kernel's buffers fill, then the server's. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Waits until pred() holds (checked after each chunk and socket event). */
  async until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`raw WebSocket: timed out waiting for ${what} (frames ${this.frames}, closed ${this.closed}, close code ${this.closeCode})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Frame parser: server frames are unmasked; a frame split over chunks waits in buf. */
  private onData(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    let buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (buf.length < 2) break;
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) break;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf[1] & 0x80) off += 4; // a masked server frame would be a server bug; skip the key
      if (buf.length < off + len) break;
      const payload = buf.subarray(off, off + len);
      this.frames++;
      if (opcode === 0x1) {
        try {
          this.messages.push(JSON.parse(payload.toString('utf8')));
        } catch {
          this.messages.push({ unparsed: payload.toString('utf8').slice(0, 200) });
        }
      } else if (opcode === 0x8) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeReason = payload.subarray(2).toString('utf8');
      }
      buf = buf.subarray(off + len);
    }
    this.buf = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    this.wake();
  }
}
