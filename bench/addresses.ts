// Source addresses and topic names of the load generators.

/**
 * "127.0.1.1-127.0.1.8,127.0.2.1" -> every address named; ranges run over
 * the last octet, or over the whole address when they cross it. Only
 * loopback (127.0.0.0/8) is accepted: load generators never leave the host.
 */
export function parseSourceAddresses(text: string): string[] {
  const out: string[] = [];
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [from, to] = part.split('-').map((s) => s.trim());
    const a = ipv4ToNumber(from);
    const b = to === undefined ? a : ipv4ToNumber(to);
    if (b < a) throw new RangeError(`source address range ${part} runs backwards`);
    if (b - a > 1 << 20) throw new RangeError(`source address range ${part} is too large`);
    for (let n = a; n <= b; n++) {
      if (n % 256 === 0 || n % 256 === 255) continue;
      out.push(numberToIpv4(n));
    }
  }
  if (out.length === 0) throw new RangeError('no source addresses given');
  return out;
}

function ipv4ToNumber(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) throw new RangeError(`${s} is not an IPv4 address`);
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) throw new RangeError(`${s} is not an IPv4 address`);
  if (parts[0] !== 127) throw new RangeError(`${s} is not a loopback address (127.0.0.0/8): load generators only run on loopback`);
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

function numberToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Splits addresses among `parts` processes (round robin), each getting at least one. */
export function splitAddresses(addresses: string[], parts: number, index: number): string[] {
  const mine = addresses.filter((_, i) => i % parts === index);
  return mine.length > 0 ? mine : [addresses[index % addresses.length]];
}

/** Topic name n of a pattern such as /bench/{n}. */
export function topicName(pattern: string, n: number): string {
  return pattern.includes('{n}') ? pattern.split('{n}').join(String(n)) : `${pattern}/${n}`;
}

/**
 * Topics of session `session` (global index) when each session takes
 * `perSession` topics out of `topicCount`: consecutive numbers modulo the
 * count, so that with topicCount = sessions * perSession every session has
 * its own topics, and with fewer topics they are shared evenly.
 */
export function sessionTopics(session: number, perSession: number, topicCount: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < perSession; k++) out.push((session * perSession + k) % topicCount);
  return out;
}

/** How many sessions receive topic n under sessionTopics (for expected delivery counts). */
export function subscribersOfTopic(n: number, sessions: number, perSession: number, topicCount: number): number {
  const slots = sessions * perSession;
  return Math.floor(slots / topicCount) + (n < slots % topicCount ? 1 : 0);
}
