// Counts per key that live for a few seconds, in a table of fixed size: the
// per-address session rate (key: the address hash, alive for the current
// second) and the admission tickets already used (key: the ticket's nonce,
// alive while the ticket could still be presented).
//
// Open addressing over typed arrays with linear probing bounded to
// MAX_PROBE slots from a key's home. An entry whose second is older than
// the caller's `minLiveSecond` is dead and its slot is taken again: no
// sweep, no tombstones, no growth. A slot never used stops a lookup (an
// insert goes to the first dead or unused slot, so no live entry lies past
// an unused one); a lookup otherwise reads all MAX_PROBE slots. When the
// slots around a key's home are all alive, add() says so and the caller
// refuses: the memory is bounded whatever the traffic.
//
// Concurrency: private to one workgroup (one thread); nothing shared.

/** Slots read from a key's home, at most: the cost of one add, and how full the table may get around one home. */
export const MAX_PROBE = 64;

export class SecondTable {
  private readonly keys: Uint32Array;
  /** The entry's second + 1 (0: slot never used). */
  private readonly seconds: Uint32Array;
  private readonly counts: Uint32Array;
  private readonly mask: number;

  /** `slots` is rounded up to a power of two (at least MAX_PROBE). Memory: 12 bytes a slot. */
  constructor(slots: number) {
    let n = MAX_PROBE;
    while (n < slots) n *= 2;
    this.keys = new Uint32Array(n);
    this.seconds = new Uint32Array(n);
    this.counts = new Uint32Array(n);
    this.mask = n - 1;
  }

  get slots(): number {
    return this.mask + 1;
  }

  /**
   * Adds one to the key's count, the entry dated `second` (an entry of the
   * key older than minLiveSecond counts from 0 again); returns the new
   * count, or 0 when the MAX_PROBE slots from its home are all alive (the
   * table is full there: refuse). No allocation.
   */
  add(key: number, second: number, minLiveSecond: number): number {
    const live = minLiveSecond + 1;
    const mask = this.mask;
    let free = -1;
    let i = mix(key) & mask;
    for (let n = 0; n < MAX_PROBE; n++, i = (i + 1) & mask) {
      const s = this.seconds[i];
      if (s === 0) {
        if (free < 0) free = i;
        break;
      }
      if (s < live) {
        if (free < 0) free = i;
        continue;
      }
      if (this.keys[i] === key) {
        this.seconds[i] = Math.max(s, second + 1);
        return ++this.counts[i];
      }
    }
    if (free < 0) return 0;
    this.keys[free] = key;
    this.seconds[free] = second + 1;
    this.counts[free] = 1;
    return 1;
  }

  /** The key's count if its entry is not older than minLiveSecond, else 0. No allocation. */
  count(key: number, minLiveSecond: number): number {
    const live = minLiveSecond + 1;
    const mask = this.mask;
    let i = mix(key) & mask;
    for (let n = 0; n < MAX_PROBE; n++, i = (i + 1) & mask) {
      const s = this.seconds[i];
      if (s === 0) return 0;
      if (s >= live && this.keys[i] === key) return this.counts[i];
    }
    return 0;
  }
}

/** Spreads keys that differ in their high bits only (counters, hashes of similar addresses) over the low bits the mask keeps. */
function mix(key: number): number {
  let h = Math.imul(key ^ (key >>> 16), 0x45d9f3b);
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  return (h ^ (h >>> 16)) >>> 0;
}
