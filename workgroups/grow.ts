// Growing a typed array of per-topic rows: a longer copy, the new rows
// filled. Rare (rows double), so a copy is fine; what matters is that the
// rows stay typed arrays, not JS objects.

type Row = Int32Array | Uint32Array | Uint8Array | Float64Array;

/** A copy of `a` with `n` rows (n >= a.length), the new rows set to `fill`. */
export function grown<T extends Row>(a: T, n: number, fill = 0): T {
  const b = new (a.constructor as new (length: number) => T)(n);
  if (fill !== 0) b.fill(fill);
  b.set(a);
  return b;
}
