// Server-Sent Events (GET /v1/sse): the resume position an SSE stream's
// events carry in their `id:` field, and the limits of a stream. Server
// (workgroups/sse.ts) and SDK (sdk/sse-transport.ts) share it.
//
// A position names every topic of the stream, in the order of the request's
// `topics` parameter, so that a browser's automatic reconnect (which sends
// the last id it saw as Last-Event-ID, to the same URL) resumes all of them:
//
//   <h>_<e0>.<s0>_<e1>.<s1>...
//
// h: topicListHash of the topics (base 36), so that an id is never taken
// for another topic list; ei, si: topic i's epoch and last seq (base 36),
// "0.0" for a topic the stream has no position in yet (it subscribes
// fresh). Only [0-9a-z._] appear: the id goes into a URL (`resume=`) as is.

/** Most topics one SSE stream may name (its id holds a position per topic). */
export const MAX_SSE_TOPICS = 32;

/** FNV-1a over the topics joined by ',': the same on server and SDK. */
export function topicListHash(topics: readonly string[]): number {
  let h = 0x811c9dc5;
  for (let t = 0; t < topics.length; t++) {
    if (t > 0) h = Math.imul(h ^ 44, 0x01000193);
    const s = topics[t];
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  }
  return h >>> 0;
}

/** One topic's part of an id: "e.s" in base 36. */
export function positionText(epoch: number, seq: number): string {
  return epoch.toString(36) + '.' + seq.toString(36);
}

/** The id of a stream over `topics` at these positions (epochs[i] 0: none). */
export function encodeResumeId(topics: readonly string[], epochs: ArrayLike<number>, seqs: ArrayLike<number>): string {
  let id = topicListHash(topics).toString(36);
  for (let i = 0; i < topics.length; i++) id += '_' + positionText(epochs[i], seqs[i]);
  return id;
}

const PART = /^([0-9a-z]{1,7})\.([0-9a-z]{1,11})$/;
const HASH = /^[0-9a-z]{1,7}$/;

/**
 * The positions an id holds for `topics` ([epoch, seq] per topic, [0, 0]
 * for none), or a sentence saying why it is not one: another topic list,
 * another count, a malformed part, an epoch above 2^32 - 1 or a seq above
 * 2^53 - 1, a seq without an epoch.
 */
export function decodeResumeId(id: string, topics: readonly string[]): [number, number][] | string {
  if (id.length > 20 * (topics.length + 1)) return 'the resume id is too long';
  const parts = id.split('_');
  if (!HASH.test(parts[0]) || parseInt(parts[0], 36) !== topicListHash(topics)) return 'the resume id is not one of a stream over these topics (in this order)';
  if (parts.length !== topics.length + 1) return `the resume id holds ${parts.length - 1} positions; the stream has ${topics.length} topics`;
  const out: [number, number][] = [];
  for (let i = 1; i < parts.length; i++) {
    const m = PART.exec(parts[i]);
    if (m === null) return `position ${i} of the resume id is not epoch.seq in base 36`;
    const epoch = parseInt(m[1], 36);
    const seq = parseInt(m[2], 36);
    if (epoch > 0xffffffff || seq > Number.MAX_SAFE_INTEGER) return `position ${i} of the resume id is out of range`;
    if (epoch === 0 && seq !== 0) return `position ${i} of the resume id has a seq without an epoch`;
    out.push([epoch, seq]);
  }
  return out;
}
