// Topic names: `/segment/segment...`, each segment of [A-Za-z0-9_.:-],
// at most 255 bytes in all; `*` and `>` are reserved for wildcards.
// The one place topic names are validated (server, workgroups and SDK).

export const MAX_TOPIC_BYTES = 255;

// 1 for every byte allowed inside a segment.
const SEGMENT_BYTE = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-') SEGMENT_BYTE[c.charCodeAt(0)] = 1;

/** Returns null when `topic` is a valid name, else a sentence saying what is wrong. No allocation on success. */
export function topicError(topic: unknown): string | null {
  if (typeof topic !== 'string') return 'topic must be a string';
  const n = topic.length;
  if (n === 0) return 'topic is empty';
  // Every allowed character is ASCII, so the string length is the byte length.
  if (n > MAX_TOPIC_BYTES) return `topic is longer than ${MAX_TOPIC_BYTES} bytes`;
  if (topic.charCodeAt(0) !== 47 /* / */) return 'topic must start with /';
  let segmentLength = 0;
  for (let i = 1; i < n; i++) {
    const c = topic.charCodeAt(i);
    if (c === 47) {
      if (segmentLength === 0) return 'topic has an empty segment';
      segmentLength = 0;
    } else if (c < 128 && SEGMENT_BYTE[c] === 1) {
      segmentLength++;
    } else if (c === 42 /* * */ || c === 62 /* > */) {
      return 'wildcards * and > are reserved';
    } else {
      return `topic has a character outside [A-Za-z0-9_.:-] at ${i}`;
    }
  }
  if (segmentLength === 0) return 'topic has an empty segment';
  return null;
}

export function isValidTopic(topic: unknown): topic is string {
  return topicError(topic) === null;
}
