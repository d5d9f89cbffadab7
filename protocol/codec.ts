// Commands and replies of protocol v1 in both encodings (JSON text frames,
// msgpack binary frames). Parsing turns any input into a Command or a
// ProtocolError: it never throws.
import { Packr, Unpackr } from 'msgpackr';
import { conflateError } from './conflation';
import { checkMsgpackData } from './data';
import { ENCODING_JSON, ENCODING_MSGPACK, type EncodingId } from './encoding';
import { CommandId, ErrorCode, ProtocolError } from './errors';
import { findRawData, readRawPub } from './msgpack-pub';
import { validatePublishFields } from './publish';
import { topicError } from './topic';
import { isWildcard, parsePatternResume, wildcardError, type PatternResume } from './wildcard';

export { MAX_DATA_DEPTH, checkJsonData, checkMsgpackData } from './data';
export { ENCODING_JSON, ENCODING_MSGPACK, encodingId, type Encoding, type EncodingId } from './encoding';

export type Qos = 'standard' | 'guaranteed';
export type ResumePosition = [epoch: number, seq: number];

export interface SubCommand {
  id: CommandId;
  op: 'sub';
  topics: string[];
  resume: Record<string, ResumePosition> | null;
  qos: Qos;
  /** At most one message per this many ms per topic, the latest (protocol/conflation.ts); 0: every message. */
  conflate: number;
  /** Wildcard patterns (protocol/wildcard.ts), apart from `topics`; null: none. */
  patterns: string[] | null;
  /** A resume position per pattern that has one; null: none. */
  patternResume: Record<string, PatternResume> | null;
}
export interface UnsubCommand {
  id: CommandId;
  op: 'unsub';
  topics: string[];
  patterns: string[] | null;
}
export interface PubCommand {
  id: CommandId;
  op: 'pub';
  topic: string;
  data: unknown;
  ack: boolean;
  retain: boolean;
  /** Creation time in microseconds given by the publisher (benchmarks), else null: the server's receive time is used. */
  ts: number | null;
  /** A repeated key within the window is not published again (protocol/idempotency.ts); null: none. */
  idempotencyKey: string | null;
  /**
   * msgpack sessions: the data value exactly as the publisher encoded it (a
   * view into the frame, valid while the command is handled), on the fast
   * path (then `data` is that view too) and on the general path (then `data`
   * is also decoded); null for JSON.
   */
  raw: Uint8Array | null;
}
export interface PingCommand {
  id: CommandId;
  op: 'ping';
}
/** Replaces the session's token (--auth jwt), or authenticates a session opened without one. */
export interface AuthCommand {
  id: CommandId;
  op: 'auth';
  token: string;
}
export type Command = SubCommand | UnsubCommand | PubCommand | PingCommand | AuthCommand;

/** Longest token an auth command may carry. */
export const MAX_AUTH_TOKEN_CHARS = 8192;

/** Most topics one sub or unsub command may name. */
export const MAX_TOPICS_PER_COMMAND = 1024;

export const packr = new Packr({ useRecords: false, variableMapSize: true });
// int64AsType 'auto': 64-bit integers JSON carries exactly (the only ones a publish may hold) decode as numbers, not
// BigInts. msgpackr 1.12 supports it; its typings do not list it yet.
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number' });

const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Parses a JSON text frame (as bytes) into a command. */
export function parseJsonCommand(bytes: Uint8Array): Command | ProtocolError {
  let value: unknown;
  try {
    // JSON.parse is iterative (no stack overflow at any nesting); the depth rule applies after it.
    value = JSON.parse(textDecoder.decode(bytes));
  } catch {
    return new ProtocolError(ErrorCode.BAD_JSON, 'frame is not valid JSON');
  }
  return validateCommand(value, null, ENCODING_JSON);
}

/** Parses a msgpack binary frame into a command. */
export function parseMsgpackCommand(bytes: Uint8Array): Command | ProtocolError {
  // Publishes, once per message: the envelope read in place, the data kept encoded.
  const fast = readRawPub(bytes);
  // The envelope object is validated as it is (no copy per message): it has every field a pub has.
  if (fast !== null) return validateCommand(fast, fast.raw, ENCODING_MSGPACK);
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch {
    return refusedData(bytes) ?? new ProtocolError(ErrorCode.BAD_MSGPACK, 'frame is not valid msgpack');
  }
  // The data is checked as the publisher encoded it (msgpackr's value has lost the key types), on both paths.
  const isPub = isPlainMap(value) && value.op === 'pub';
  return validateCommand(value, isPub ? findRawData(bytes) : null, ENCODING_MSGPACK);
}

/**
 * A frame msgpackr could not decode because of its data (an extension type
 * it does not know, nesting past its stack): the same answer as the fast
 * path, the data rule's BAD_DATA after the envelope's checks, or null.
 * Error path only: the envelope is decoded again with nil for data.
 */
function refusedData(bytes: Uint8Array): Command | ProtocolError | null {
  const raw = findRawData(bytes);
  if (raw === null || checkMsgpackData(raw) === null) return null;
  const at = raw.byteOffset - bytes.byteOffset;
  const envelope = new Uint8Array(bytes.length - raw.length + 1);
  envelope.set(bytes.subarray(0, at));
  envelope[at] = 0xc0;
  envelope.set(bytes.subarray(at + raw.length), at + 1);
  let value: unknown;
  try {
    value = unpackr.unpack(envelope);
  } catch {
    return null;
  }
  const cmd = validateCommand(value, raw, ENCODING_MSGPACK);
  // Only a refusal: data msgpackr cannot decode is never accepted.
  return cmd instanceof ProtocolError ? cmd : null;
}

function isPlainMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map);
}

/**
 * Checks the shape of a decoded command; every field is checked for type.
 * raw: a msgpack pub's data as the publisher encoded it, when known (it is
 * what the data rule checks, and what msgpack subscribers get). Never throws.
 */
export function validateCommand(value: unknown, raw: Uint8Array | null = null, encoding: EncodingId = ENCODING_JSON): Command | ProtocolError {
  if (!isPlainMap(value)) return new ProtocolError(ErrorCode.BAD_REQUEST, 'a command must be a map');
  const id = value.id;
  if (id === undefined || id === null) return new ProtocolError(ErrorCode.MISSING_ID, 'a command needs an id');
  if (typeof id !== 'number' && typeof id !== 'string') return new ProtocolError(ErrorCode.MISSING_ID, 'id must be a string or a number');
  if (typeof id === 'string' && id.length > 128) return new ProtocolError(ErrorCode.MISSING_ID, 'id must be at most 128 characters');
  if (typeof id === 'number' && !Number.isFinite(id)) return new ProtocolError(ErrorCode.MISSING_ID, 'id must be a finite number');
  switch (value.op) {
    case 'sub':
      return validateSub(id, value);
    case 'unsub': {
      const topics = validateTopics(id, value.topics);
      if (topics instanceof ProtocolError) return topics;
      const patterns = splitPatterns(topics);
      return { id, op: 'unsub', topics: patterns === null ? topics : topics.filter((t) => !isWildcard(t)), patterns };
    }
    case 'pub': {
      const ack = optionalBoolean(value.ack);
      // Once per message: the command is the one object made; the checks fill it.
      const cmd: PubCommand = { id, op: 'pub', topic: '', data: undefined, ack: ack === true, retain: false, ts: null, idempotencyKey: null, raw: null };
      const err = validatePublishFields(value, raw, encoding, cmd);
      if (err !== null) return new ProtocolError(err.code, err.message, id);
      if (ack === null) return new ProtocolError(ErrorCode.BAD_REQUEST, 'ack must be a boolean', id);
      return cmd;
    }
    case 'ping':
      return { id, op: 'ping' };
    case 'auth': {
      const token = value.token;
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_AUTH_TOKEN_CHARS) {
        return new ProtocolError(ErrorCode.BAD_REQUEST, `token must be a string of 1 to ${MAX_AUTH_TOKEN_CHARS} characters`, id);
      }
      return { id, op: 'auth', token };
    }
    default:
      return new ProtocolError(
        ErrorCode.UNKNOWN_OP,
        `unknown op ${typeof value.op === 'string' ? JSON.stringify(value.op.slice(0, 100)) : describe(value.op)}; expected sub, unsub, pub, ping or auth`,
        id,
      );
  }
}

function optionalBoolean(v: unknown): boolean | null {
  if (v === undefined || v === null) return false;
  return typeof v === 'boolean' ? v : null;
}

function validateTopics(id: CommandId, topics: unknown): string[] | ProtocolError {
  if (!Array.isArray(topics) || topics.length === 0) return new ProtocolError(ErrorCode.BAD_REQUEST, 'topics must be a non-empty array of topic names', id);
  if (topics.length > MAX_TOPICS_PER_COMMAND) return new ProtocolError(ErrorCode.BAD_REQUEST, `at most ${MAX_TOPICS_PER_COMMAND} topics per command`, id);
  for (const t of topics) {
    const err = typeof t === 'string' && isWildcard(t) ? wildcardError(t) : topicError(t);
    if (err !== null) return new ProtocolError(ErrorCode.BAD_TOPIC, `${describe(t)}: ${err}`, id);
  }
  return topics as string[];
}

/** The wildcard patterns among a command's names, or null when there are none. */
function splitPatterns(names: string[]): string[] | null {
  let out: string[] | null = null;
  for (const n of names) if (isWildcard(n)) (out ??= []).push(n);
  return out;
}

function validateSub(id: CommandId, value: Record<string, unknown>): SubCommand | ProtocolError {
  const names = validateTopics(id, value.topics);
  if (names instanceof ProtocolError) return names;
  const patterns = splitPatterns(names);
  const topics = patterns === null ? names : names.filter((t) => !isWildcard(t));
  let patternResume: Record<string, PatternResume> | null = null;
  let qos: Qos = 'guaranteed';
  if (value.qos !== undefined && value.qos !== null) {
    if (value.qos !== 'standard' && value.qos !== 'guaranteed') return new ProtocolError(ErrorCode.BAD_REQUEST, 'qos must be "standard" or "guaranteed"', id);
    qos = value.qos;
  }
  let resume: Record<string, ResumePosition> | null = null;
  if (value.resume !== undefined && value.resume !== null) {
    if (!isPlainMap(value.resume)) return new ProtocolError(ErrorCode.BAD_REQUEST, 'resume must be a map of topic to [epoch, seq]', id);
    resume = {};
    for (const [topic, pos] of Object.entries(value.resume)) {
      if (patterns !== null && patterns.includes(topic)) {
        const r = parsePatternResume(topic, pos);
        if (typeof r === 'string') return new ProtocolError(ErrorCode.BAD_REQUEST, r, id);
        (patternResume ??= {})[topic] = r;
        continue;
      }
      if (!topics.includes(topic)) return new ProtocolError(ErrorCode.BAD_REQUEST, `resume names ${topic.slice(0, 300)}, which is not in topics`, id);
      if (!Array.isArray(pos) || pos.length !== 2 || !isUint(pos[0], 0xffffffff) || !isUint(pos[1], Number.MAX_SAFE_INTEGER)) {
        return new ProtocolError(ErrorCode.BAD_REQUEST, `resume position of ${topic} must be [epoch, seq], two non-negative integers`, id);
      }
      resume[topic] = [pos[0], pos[1]];
    }
  }
  const conflateErr = conflateError(value.conflate);
  if (conflateErr !== null) return new ProtocolError(ErrorCode.BAD_REQUEST, conflateErr, id);
  return { id, op: 'sub', topics, resume, qos, conflate: (value.conflate as number | null | undefined) ?? 0, patterns, patternResume };
}

/** A field's value for an error message: never walks a nested value (it may be thousands of levels deep). */
function describe(v: unknown): string {
  if (typeof v === 'string') return v.slice(0, 300);
  if (v === null || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === undefined) return 'undefined';
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/** Encodes a reply map in the session's encoding. Replies are per command, never per delivery. */
export function encodeReply(encoding: EncodingId, reply: Record<string, unknown>): string | Uint8Array {
  return encoding === ENCODING_JSON ? JSON.stringify(reply) : packr.pack(reply);
}

export function errorReply(err: ProtocolError): Record<string, unknown> {
  return { id: err.id, error: { code: err.code, message: err.message } };
}

/** Data as JSON text, for JSON frames. Binary data becomes {"$base64": "..."} (JSON has no bytes). */
export function dataToJson(data: unknown): string {
  return JSON.stringify(data, binaryReplacer);
}

function binaryReplacer(this: unknown, _key: string, v: unknown): unknown {
  // A BigInt here is within ±2^53−1 (the data rule refuses the others): exact as a number.
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) return { $base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
    return { $base64: Buffer.from((v as { data: number[] }).data).toString('base64') };
  }
  return v;
}

/** Data as msgpack bytes, for binary frames. */
export function dataToMsgpack(data: unknown): Uint8Array {
  return packr.pack(data);
}
