// Conflation in a workgroup (protocol/conflation.ts): sessions that asked
// for at most one message per interval of a topic share one group per
// (topic, interval), not one per session. A group's sessions subscribe in
// uWS to a derived key, the encoding's letter, the topic, "~" and the
// interval ("j/px/EURUSD~100"; "~" is never in a topic name), so the
// workgroup hands uWS one frame per group and interval, and uWS writes it
// to every session of the group: 100,000 conflating sessions of one topic
// cost one timer and one frame per interval.
//
// A group sends a message at once when its last frame is at least one
// interval old, else keeps it as pending (a later message replaces it and
// counts as skipped) with one timer at the end of the interval. Each frame
// says how many messages the group skipped since its previous frame; its
// seq is the message's own.
//
// A conflating resume: the owner replays as for any resume; the pending
// subscription keeps only the latest replayed message, written (flag
// REPLAY, skipped = the others) just before the sub reply.
//
// Concurrency: the workgroup's thread only.
import { performance } from 'node:perf_hooks';
import type { TemplatedApp, WebSocket } from '../native-io/uws';
import { ENCODING_JSON, type EncodingId } from '../protocol/codec';
import { encodeConflatedBinaryFrame, encodeConflatedJsonFrame } from '../protocol/conflation';
import { FrameFlag } from '../protocol/frame';
import { Stat } from '../protocol/stats';
import { RecordFlag } from './records';

const EMPTY = new Uint8Array(0);

/** The uWS key of a session's subscription: plain (`ms` 0) or of the (topic, ms) group. */
export function subscriptionKey(prefix: string, topic: string, ms: number): string {
  return ms === 0 ? prefix + topic : `${prefix}${topic}~${ms}`;
}

/** The topic of one of our uWS keys (plain or conflated). */
export function topicOfKey(key: string): string {
  const i = key.indexOf('~');
  return i < 0 ? key.slice(1) : key.slice(1, i);
}

/** What conflation needs of the workgroup's subscriber side (workgroups/delivery.ts). */
export interface ConflationDelivery<U> {
  readonly stats: Float64Array;
  app(): TemplatedApp;
  convertToJson(topic: string, seq: number, data: Uint8Array): string | null;
  convertToMsgpack(topic: string, seq: number, json: string | null, data: Uint8Array): Uint8Array | null;
  /** Bytes a session may hold beyond --max-backpressure-bytes because they were replayed. */
  readonly replayAllowance: Map<number, number>;
  sendToSession(ws: WebSocket<U>, slot: number, bytes: string | Uint8Array, binary: boolean): void;
}

class Group {
  readonly keyJson: string;
  readonly keyMsgpack: string;
  epoch = 0;
  seq = 0;
  tsMicros = 0;
  msgpack = 0;
  /** The message to send (a copy while pending: the caller's view does not outlive the call). */
  data: Uint8Array = EMPTY;
  json: string | null = null;
  pending = false;
  /** Messages replaced since the last frame. */
  skipped = 0;
  lastSentMs = -Infinity;
  timer: ReturnType<typeof setTimeout> | null = null;
  readonly fire: () => void;

  constructor(
    readonly topic: string,
    readonly ms: number,
    send: (g: Group, nowMs: number) => void,
  ) {
    this.keyJson = subscriptionKey('j', topic, ms);
    this.keyMsgpack = subscriptionKey('m', topic, ms);
    this.fire = () => {
      this.timer = null;
      if (this.pending) send(this, performance.now());
    };
  }
}

/** The latest replayed message of a pending conflating subscription, and how many came. */
interface HeldReplay {
  topic: string;
  epoch: number;
  seq: number;
  tsMicros: number;
  flags: number;
  data: Uint8Array;
  count: number;
}

export class Conflation<U> {
  private readonly byTopic = new Map<string, Group[]>();
  private readonly held = new Map<object, HeldReplay>();
  private groups = 0;

  constructor(private readonly delivery: ConflationDelivery<U>) {}

  /** Topics with at least one group here (0: deliveries pass by with one comparison). */
  get topics(): number {
    return this.byTopic.size;
  }

  has(topic: string): boolean {
    return this.byTopic.has(topic);
  }

  /**
   * One message of a topic for this workgroup's conflating sessions: sent
   * now, or kept until the group's interval ends. No allocation unless it
   * is kept (one copy of the data per message, whatever the groups).
   */
  offer(topic: string, epoch: number, seq: number, tsMicros: number, msgpack: number, data: Uint8Array, json: string | null): void {
    const groups = this.byTopic.get(topic);
    if (groups === undefined) return;
    const now = performance.now();
    let copy: Uint8Array | null = null;
    for (const g of groups) {
      if (g.pending) {
        g.skipped++;
        this.delivery.stats[Stat.CONFLATED_SKIPPED]++;
      }
      g.epoch = epoch;
      g.seq = seq;
      g.tsMicros = tsMicros;
      g.msgpack = msgpack;
      g.json = json;
      if (g.timer === null && now - g.lastSentMs >= g.ms) {
        g.data = data;
        this.send(g, now);
        continue;
      }
      copy ??= new Uint8Array(data);
      g.data = copy;
      g.pending = true;
      g.timer ??= setTimeout(g.fire, Math.max(0, g.lastSentMs + g.ms - now));
    }
  }

  /** A group's timer: never throws (a timer's exception would end the workgroup); a failure is counted. */
  private readonly sendBound = (g: Group, nowMs: number): void => {
    try {
      this.send(g, nowMs);
    } catch {
      this.delivery.stats[Stat.INTERNAL_ERRORS]++;
    }
  };

  /** Hands the group's message to uWS, once per encoding its sessions use. */
  private send(g: Group, nowMs: number): void {
    const d = this.delivery;
    const app = d.app();
    const stats = d.stats;
    const nJson = app.numSubscribers(g.keyJson);
    const nMsgpack = app.numSubscribers(g.keyMsgpack);
    if (nJson > 0) {
      const text = g.json ?? (g.msgpack ? d.convertToJson(g.topic, g.seq, g.data) : textOf(g.data));
      if (text !== null) {
        const frame = encodeConflatedJsonFrame(g.topic, g.epoch, g.seq, g.tsMicros, 0, g.skipped, text);
        app.publish(g.keyJson, frame, false);
        stats[Stat.BYTES_OUT] += nJson * frame.length;
        stats[Stat.CONFLATED_FRAMES]++;
      }
    }
    if (nMsgpack > 0) {
      const payload = g.msgpack ? g.data : d.convertToMsgpack(g.topic, g.seq, g.json, g.data);
      if (payload !== null) {
        const frame = encodeConflatedBinaryFrame(g.topic, g.epoch, g.seq, g.tsMicros, 0, g.skipped, payload);
        app.publish(g.keyMsgpack, frame, true);
        stats[Stat.BYTES_OUT] += nMsgpack * frame.length;
        stats[Stat.CONFLATED_FRAMES]++;
      }
    }
    stats[Stat.MESSAGES_OUT] += nJson + nMsgpack;
    g.lastSentMs = nowMs;
    g.pending = false;
    g.skipped = 0;
    g.data = EMPTY;
    g.json = null;
  }

  /** The session's key for the topic (plain or a group's), or null when it has none. */
  subscribedKey(ws: WebSocket<U>, prefix: string, topic: string): string | null {
    if (ws.isSubscribed(prefix + topic)) return prefix + topic;
    const groups = this.byTopic.get(topic);
    if (groups !== undefined) {
      for (const g of groups) {
        const key = prefix === 'j' ? g.keyJson : g.keyMsgpack;
        if (ws.isSubscribed(key)) return key;
      }
    }
    return null;
  }

  /**
   * Subscribes the session to `key` (joining its group when `ms` > 0), and
   * drops the key it had for the topic, if any: one subscription per
   * session and topic. True when it replaced one.
   */
  subscribe(ws: WebSocket<U>, key: string, topic: string, ms: number): boolean {
    const before = this.subscribedKey(ws, key.charAt(0), topic);
    if (ms > 0) this.join(topic, ms);
    ws.subscribe(key);
    if (before === null) return false;
    ws.unsubscribe(before);
    return true;
  }

  private join(topic: string, ms: number): void {
    let groups = this.byTopic.get(topic);
    if (groups === undefined) {
      groups = [];
      this.byTopic.set(topic, groups);
    }
    for (const g of groups) if (g.ms === ms) return;
    groups.push(new Group(topic, ms, this.sendBound));
    this.delivery.stats[Stat.CONFLATION_GROUPS] = ++this.groups;
  }

  /**
   * uWS: a key of ours has no subscriber left here. A group whose two keys
   * have none is dropped (its timer with it). Returns the key's topic.
   */
  release(key: string): string {
    const i = key.indexOf('~');
    if (i < 0) return key.slice(1);
    const topic = key.slice(1, i);
    const groups = this.byTopic.get(topic);
    if (groups === undefined) return topic;
    const app = this.delivery.app();
    for (let k = 0; k < groups.length; k++) {
      const g = groups[k];
      if (g.keyJson !== key && g.keyMsgpack !== key) continue;
      if (app.numSubscribers(g.keyJson) + app.numSubscribers(g.keyMsgpack) > 0) break;
      if (g.timer !== null) clearTimeout(g.timer);
      groups.splice(k, 1);
      if (groups.length === 0) this.byTopic.delete(topic);
      this.delivery.stats[Stat.CONFLATION_GROUPS] = --this.groups;
      break;
    }
    return topic;
  }

  /** A replayed message for the pending conflating subscription `sub`: kept if it is the latest so far. */
  holdReplay(sub: object, topic: string, epoch: number, seq: number, tsMicros: number, flags: number, data: Uint8Array): void {
    let h = this.held.get(sub);
    if (h === undefined) {
      h = { topic, epoch, seq, tsMicros, flags, data: EMPTY, count: 0 };
      this.held.set(sub, h);
    }
    h.count++;
    h.epoch = epoch;
    h.seq = seq;
    h.tsMicros = tsMicros;
    h.flags = flags;
    h.data = new Uint8Array(data);
  }

  /**
   * The pending subscription `sub` is answered: its latest replayed message
   * goes to the session (when `ws` is given), flag REPLAY, with the others
   * as its skipped count; or is dropped (the subscription failed).
   */
  endReplay(sub: object, ws: WebSocket<U> | undefined, slot: number, encoding: EncodingId): void {
    const h = this.held.get(sub);
    if (h === undefined) return;
    this.held.delete(sub);
    if (ws === undefined) return;
    const d = this.delivery;
    let frame: string | Uint8Array;
    if (encoding === ENCODING_JSON) {
      const json = h.flags & RecordFlag.MSGPACK ? d.convertToJson(h.topic, h.seq, h.data) : textOf(h.data);
      if (json === null) return;
      frame = encodeConflatedJsonFrame(h.topic, h.epoch, h.seq, h.tsMicros, FrameFlag.REPLAY, h.count - 1, json);
    } else {
      const payload = h.flags & RecordFlag.MSGPACK ? h.data : d.convertToMsgpack(h.topic, h.seq, null, h.data);
      if (payload === null) return;
      frame = encodeConflatedBinaryFrame(h.topic, h.epoch, h.seq, h.tsMicros, FrameFlag.REPLAY, h.count - 1, payload);
    }
    d.stats[Stat.REPLAYED_MESSAGES]++;
    d.stats[Stat.MESSAGES_OUT]++;
    d.stats[Stat.BYTES_OUT] += frame.length;
    d.replayAllowance.set(slot, (d.replayAllowance.get(slot) ?? 0) + frame.length);
    d.sendToSession(ws, slot, frame, encoding !== ENCODING_JSON);
  }
}

function textOf(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
}
