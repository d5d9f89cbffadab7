// Wildcard subscriptions: `/prices/*` (`*` is one whole segment) and
// `/chat/>` (`>`, the last segment only, is one or more segments). The
// names a sub or unsub command may give besides topics, and what a client
// resuming one sends: the position of every concrete topic it has seen,
// and the pattern's horizon (the owners' log positions it is complete up
// to, opaque to the client). Shared by server, workgroups and SDK.
import { MAX_TOPIC_BYTES, topicError } from './topic';

/** True when a name holds a wildcard character: it is a pattern, not a topic. No allocation. */
export function isWildcard(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 42 /* * */ || c === 62 /* > */) return true;
  }
  return false;
}

const SEGMENT = /^[A-Za-z0-9_.:-]+$/;

/** Null when `p` is a valid subscription pattern, else a sentence saying what is wrong. */
export function wildcardError(p: unknown): string | null {
  if (typeof p !== 'string') return 'a pattern must be a string';
  if (p.length === 0 || p.length > MAX_TOPIC_BYTES) return `a pattern must be 1 to ${MAX_TOPIC_BYTES} bytes`;
  if (p.charCodeAt(0) !== 47) return 'a pattern must start with /';
  const parts = p.slice(1).split('/');
  for (let i = 0; i < parts.length; i++) {
    const s = parts[i];
    if (s === '') return 'a pattern has an empty segment';
    if (s === '*') continue;
    if (s === '>') {
      if (i !== parts.length - 1) return '> may only be the last segment';
      continue;
    }
    if (!SEGMENT.test(s)) return `segment ${s.slice(0, 60)} holds a character outside [A-Za-z0-9_.:-] (* and > must be whole segments)`;
  }
  return null;
}

/** Whether a valid topic matches a valid pattern (the SDK's and the tests' check; the server matches through a trie). */
export function wildcardMatches(pattern: string, topic: string): boolean {
  const p = pattern.split('/');
  const t = topic.split('/');
  for (let i = 1; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

/**
 * What a client resuming a pattern sends (`resume: {"/p/*": {...}}`):
 * `horizon`, as the server gave it, and the last (epoch, seq) of every
 * concrete topic it has seen under the pattern.
 */
export interface PatternResume {
  horizon: number[];
  topics: Record<string, [epoch: number, seq: number]>;
}

/** Most workgroups a horizon names (pairs of numbers): MAX_WORKGROUPS. */
const MAX_HORIZON_PARTS = 32;
/** Most concrete topics one pattern's resume may name. */
export const MAX_RESUME_TOPICS_PER_PATTERN = 100_000;

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/** Checks a pattern's resume value; a sentence saying what is wrong, or the value. */
export function parsePatternResume(pattern: string, v: unknown): PatternResume | string {
  const what = `resume of pattern ${pattern}`;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${what} must be a map {horizon, topics}`;
  const r = v as Record<string, unknown>;
  const h = r.horizon;
  if (!Array.isArray(h) || h.length % 2 !== 0 || h.length > 2 * MAX_HORIZON_PARTS || !h.every((x) => isUint(x, Number.MAX_SAFE_INTEGER))) {
    return `${what}: horizon must be the array the server gave`;
  }
  const topics: Record<string, [number, number]> = {};
  if (r.topics !== undefined && r.topics !== null) {
    if (typeof r.topics !== 'object' || Array.isArray(r.topics)) return `${what}: topics must be a map of topic to [epoch, seq]`;
    const entries = Object.entries(r.topics as Record<string, unknown>);
    if (entries.length > MAX_RESUME_TOPICS_PER_PATTERN) return `${what} names more than ${MAX_RESUME_TOPICS_PER_PATTERN} topics`;
    for (const [t, pos] of entries) {
      if (topicError(t) !== null || !wildcardMatches(pattern, t)) return `${what} names ${t.slice(0, 300)}, which the pattern does not match`;
      if (!Array.isArray(pos) || pos.length !== 2 || !isUint(pos[0], 0xffffffff) || !isUint(pos[1], Number.MAX_SAFE_INTEGER)) {
        return `${what}: the position of ${t} must be [epoch, seq], two non-negative integers`;
      }
      topics[t] = [pos[0], pos[1]];
    }
  }
  return { horizon: h as number[], topics };
}
