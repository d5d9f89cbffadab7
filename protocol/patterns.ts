// Topic patterns, as a token's subscribe and publish claims name them:
// `/prices/*` (`*` is one whole segment), `/chat/>` (`>`, the last segment
// only, is one or more segments), and `{sub}` anywhere inside a segment,
// standing for the token's subject (`/user/{sub}/>` is a user's own tree).
// A pattern is compiled once into a list of segment tests; a topic is
// checked by walking its segments once, with no allocation.
import { MAX_TOPIC_BYTES } from './topic';

/** The placeholder a pattern may hold for the token's subject. */
export const SUBJECT_PLACEHOLDER = '{sub}';

// One compiled segment: a literal, `*`, `>`, or a literal with the subject inside.
const LITERAL = 0;
const ONE = 1;
const REST = 2;
const WITH_SUBJECT = 3;

interface Segment {
  kind: number;
  /** LITERAL: the segment. WITH_SUBJECT: the text before {sub}. */
  text: string;
  /** WITH_SUBJECT: the text after {sub} (a segment holds at most one {sub}). */
  after: string;
}

export interface CompiledPattern {
  readonly source: string;
  readonly segments: readonly Segment[];
  /** Whether a segment holds {sub}: such a pattern matches nothing for a token without a subject. */
  readonly usesSubject: boolean;
}

const SEGMENT_CHAR = /^[A-Za-z0-9_.:-]*$/;

/** Compiles a pattern, or returns a sentence saying what is wrong with it. */
export function compilePattern(source: unknown): CompiledPattern | string {
  if (typeof source !== 'string') return 'a topic pattern must be a string';
  if (source.length === 0 || source.length > MAX_TOPIC_BYTES + 64) return `a topic pattern must be 1 to ${MAX_TOPIC_BYTES + 64} characters`;
  if (source.charCodeAt(0) !== 47) return `topic pattern ${source.slice(0, 100)} must start with /`;
  const parts = source.slice(1).split('/');
  const segments: Segment[] = [];
  let usesSubject = false;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (p === '') return `topic pattern ${source.slice(0, 100)} has an empty segment`;
    if (p === '*') segments.push({ kind: ONE, text: '', after: '' });
    else if (p === '>') {
      if (i !== parts.length - 1) return `topic pattern ${source.slice(0, 100)}: > may only be the last segment`;
      segments.push({ kind: REST, text: '', after: '' });
    } else {
      const at = p.indexOf(SUBJECT_PLACEHOLDER);
      if (at >= 0) {
        const before = p.slice(0, at);
        const after = p.slice(at + SUBJECT_PLACEHOLDER.length);
        if (!SEGMENT_CHAR.test(before) || !SEGMENT_CHAR.test(after)) return `topic pattern ${source.slice(0, 100)}: a segment holds a character outside [A-Za-z0-9_.:-] or two {sub}`;
        segments.push({ kind: WITH_SUBJECT, text: before, after });
        usesSubject = true;
      } else {
        if (!SEGMENT_CHAR.test(p)) return `topic pattern ${source.slice(0, 100)}: segment ${p.slice(0, 60)} holds a character outside [A-Za-z0-9_.:-] (or * or > inside a segment)`;
        segments.push({ kind: LITERAL, text: p, after: '' });
      }
    }
  }
  return { source, segments, usesSubject };
}

/**
 * Whether a valid topic name matches the pattern, `subject` standing for
 * {sub} (null: patterns that use it match nothing). No allocation.
 */
export function matchPattern(p: CompiledPattern, topic: string, subject: string | null): boolean {
  const segs = p.segments;
  const n = topic.length;
  let pos = 1; // after the leading '/'
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    if (pos > n) return false;
    if (s.kind === REST) return pos < n;
    let end = topic.indexOf('/', pos);
    if (end < 0) end = n;
    const len = end - pos;
    if (s.kind === LITERAL) {
      if (len !== s.text.length || !topic.startsWith(s.text, pos)) return false;
    } else if (s.kind === WITH_SUBJECT) {
      if (subject === null) return false;
      const before = s.text;
      const after = s.after;
      if (len !== before.length + subject.length + after.length) return false;
      if (!topic.startsWith(before, pos) || !topic.startsWith(subject, pos + before.length) || !topic.startsWith(after, pos + before.length + subject.length)) return false;
    } else if (len === 0) return false; // ONE: a whole, non-empty segment
    pos = end + 1;
  }
  return pos === n + 1;
}

/**
 * Whether every topic a valid subscription pattern (protocol/wildcard.ts:
 * `*` one segment, `>` the rest) can match also matches the claim pattern
 * `p`: a wildcard subscription is allowed only as a whole.
 */
export function coversPattern(p: CompiledPattern, pattern: string, subject: string | null): boolean {
  const segs = p.segments;
  const parts = pattern.split('/');
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    const q = parts[i + 1];
    if (q === undefined) return false;
    if (s.kind === REST) return true;
    if (q === '>') return false;
    if (s.kind === ONE) continue;
    if (q === '*') return false;
    if (s.kind === LITERAL && q !== s.text) return false;
    if (s.kind === WITH_SUBJECT && (subject === null || q !== s.text + subject + s.after)) return false;
  }
  return parts.length === segs.length + 1;
}

/** A list of compiled patterns: a topic is allowed when one matches. */
export class PatternSet {
  private constructor(readonly patterns: readonly CompiledPattern[]) {}

  static readonly EMPTY = new PatternSet([]);

  /** Compiles a claim's list, or returns a sentence saying what is wrong (absent: the empty set). */
  static compile(claim: unknown, name: string): PatternSet | string {
    if (claim === undefined || claim === null) return PatternSet.EMPTY;
    if (!Array.isArray(claim)) return `the ${name} claim must be an array of topic patterns`;
    if (claim.length > 1024) return `the ${name} claim holds more than 1024 patterns`;
    const out: CompiledPattern[] = [];
    for (const c of claim) {
      const p = compilePattern(c);
      if (typeof p === 'string') return `${name} claim: ${p}`;
      out.push(p);
    }
    return new PatternSet(out);
  }

  get size(): number {
    return this.patterns.length;
  }

  allows(topic: string, subject: string | null): boolean {
    const ps = this.patterns;
    for (let i = 0; i < ps.length; i++) if (matchPattern(ps[i], topic, subject)) return true;
    return false;
  }

  /** Whether one pattern of the set covers a wildcard subscription's pattern (coversPattern). */
  allowsPattern(pattern: string, subject: string | null): boolean {
    const ps = this.patterns;
    for (let i = 0; i < ps.length; i++) if (coversPattern(ps[i], pattern, subject)) return true;
    return false;
  }
}
