// Connections per client address, for --max-connections-per-ip. IP hashing
// sends every connection of one address to one workgroup, but only until a
// workgroup restarts: its new listen socket joins the port's group at
// another index, so some addresses then land in another workgroup while
// their older sessions stay where they were. So each workgroup's table can
// live in shared memory (made by the supervisor, outliving restarts), and
// the cap counts an address in every workgroup's table.
// Open addressing with linear probing over typed arrays; an address whose
// count falls to 0 is removed by backward-shift deletion (no tombstones).
//
// Concurrency: a table has one writer, its workgroup (the supervisor clears
// it while no workgroup runs). Other workgroups only read it, with plain
// loads: a read racing a backward shift can miss an entry for that moment
// (the cap is then one address's count short, once), never loop or fault.

export class IpTable {
  private keys: Uint32Array;
  private counts: Uint32Array;
  private used = 0;
  /** Over shared memory: the size is fixed (a resize would leave the readers on the old arrays). */
  private readonly fixed: boolean;

  /** A private table that grows, or one over a shared buffer of sharedBytes(capacity), cleared when `clear`. */
  constructor(initial: number | SharedArrayBuffer = 1024, clear = false) {
    if (typeof initial === 'number') {
      this.keys = new Uint32Array(initial);
      this.counts = new Uint32Array(initial);
      this.fixed = false;
      return;
    }
    const capacity = initial.byteLength / 8;
    this.keys = new Uint32Array(initial, 0, capacity);
    this.counts = new Uint32Array(initial, capacity * 4, capacity);
    this.fixed = true;
    if (clear) this.counts.fill(0);
    for (let i = 0; i < capacity; i++) if (this.counts[i] !== 0) this.used++;
  }

  /** Bytes of a shared table for `capacity` slots (a power of two; at most half of them used). */
  static sharedBytes(capacity: number): number {
    return capacity * 8;
  }

  get size(): number {
    return this.used;
  }

  count(hash: number): number {
    const i = this.find(hash);
    return i < 0 ? 0 : this.counts[i];
  }

  /** Adds one connection for the address; returns its new count, or 0 when a shared table is full (refuse the connection). */
  add(hash: number): number {
    if ((this.used + 1) * 2 > this.keys.length) {
      if (this.fixed) {
        const i = this.find(hash);
        return i < 0 ? 0 : ++this.counts[i];
      }
      this.resize(this.keys.length * 2);
    }
    const mask = this.keys.length - 1;
    let i = hash & mask;
    while (this.counts[i] !== 0) {
      if (this.keys[i] === hash) return ++this.counts[i];
      i = (i + 1) & mask;
    }
    this.keys[i] = hash;
    this.counts[i] = 1;
    this.used++;
    return 1;
  }

  /** Removes one connection for the address. */
  remove(hash: number): void {
    let i = this.find(hash);
    if (i < 0) return;
    if (--this.counts[i] > 0) return;
    this.used--;
    const mask = this.keys.length - 1;
    // Backward-shift: move later entries of the probe run into the hole.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (this.counts[j] === 0) break;
      const home = this.keys[j] & mask;
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (between) continue;
      this.keys[i] = this.keys[j];
      this.counts[i] = this.counts[j];
      this.counts[j] = 0;
      i = j;
    }
    this.counts[i] = 0;
  }

  private find(hash: number): number {
    const mask = this.keys.length - 1;
    let i = hash & mask;
    // Bounded: another workgroup's table may change under a reader.
    for (let n = 0; n <= mask && this.counts[i] !== 0; n++) {
      if (this.keys[i] === hash) return i;
      i = (i + 1) & mask;
    }
    return -1;
  }

  private resize(n: number): void {
    const oldKeys = this.keys;
    const oldCounts = this.counts;
    this.keys = new Uint32Array(n);
    this.counts = new Uint32Array(n);
    this.used = 0;
    const mask = n - 1;
    for (let k = 0; k < oldKeys.length; k++) {
      if (oldCounts[k] === 0) continue;
      let i = oldKeys[k] & mask;
      while (this.counts[i] !== 0) i = (i + 1) & mask;
      this.keys[i] = oldKeys[k];
      this.counts[i] = oldCounts[k];
      this.used++;
    }
  }
}

/** FNV-1a over the bytes of an address as uWS gives it (16 bytes, IPv4 mapped into IPv6). */
export function addressHash(address: ArrayBuffer): number {
  const b = new Uint8Array(address);
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
