// The index the attachIpHash BPF program (src/reuseport.cc, IpHashProgram)
// picks for a client address, computed in JS: the two must stay in step.
// Lets the server say which workgroup an address belongs to, and lets tests
// check the kernel's choice instead of only its consistency.
import { isIP } from 'node:net';
import { argTypeError, integerArg } from './args';

function fmix32(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

function ipv4Word(address: string): number {
  const [a, b, c, d] = address.split('.').map(Number);
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** The eight 16-bit groups of a valid IPv6 address (embedded IPv4 allowed). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const w = ipv4Word(dotted[1]);
    text = text.slice(0, -dotted[1].length) + `${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const parse = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = tail === null ? [] : parse(tail);
  return [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
}

/**
 * The socket index (0 .. groups-1) in the SO_REUSEPORT group that
 * attachIpHash steers `address` to. IPv4 hashes the whole address; IPv6
 * hashes its first 64 bits; an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
 * what a dual-stack socket reports for an IPv4 client) hashes as the IPv4
 * address it is, because that is the packet the kernel sees.
 */
export function ipHashIndex(address: string, groups: number): number {
  if (typeof address !== 'string') throw argTypeError('address', 'string');
  integerArg(groups, 'groups', 1, 65535);
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) {
    const err = new TypeError(`The "address" argument must be an IPv4 or IPv6 address. Received '${address}'.`);
    (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  let h: number;
  if (family === 4) {
    h = ipv4Word(bare);
  } else {
    const g = ipv6Groups(bare);
    const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
    if (mapped) {
      h = ((g[6] << 16) | g[7]) >>> 0;
    } else {
      const w0 = ((g[0] << 16) | g[1]) >>> 0;
      const w1 = ((g[2] << 16) | g[3]) >>> 0;
      h = (Math.imul(w0, 0x9e3779b1) + w1) >>> 0;
    }
  }
  return fmix32(h) % groups;
}
