// Arena chunks: where the cache's segments and the snapshot store's blocks
// come from (native-io's allocShared on huge pages in a workgroup, plain
// ArrayBuffers in tests), and the one check every chunk goes through.

/**
 * Gives one arena chunk of the bytes asked for: a whole (Shared)ArrayBuffer,
 * or a Uint8Array over part of a bigger one (byteOffset a multiple of 8), so
 * that chunks can be carved from one large huge-page arena.
 */
export type ArenaAllocator = (bytes: number) => ArrayBufferLike | Uint8Array;
export const defaultAllocator: ArenaAllocator = (bytes) => new ArrayBuffer(bytes);

/** The allocator's chunk as (buffer, byteOffset), checked. */
export function takeChunk(allocate: ArenaAllocator, bytes: number): { buffer: ArrayBufferLike; offset: number } {
  const r = allocate(bytes);
  const view = ArrayBuffer.isView(r);
  const buffer = view ? (r as Uint8Array).buffer : (r as ArrayBufferLike);
  const offset = view ? (r as Uint8Array).byteOffset : 0;
  const length = view ? (r as Uint8Array).byteLength : buffer.byteLength;
  if (length < bytes || offset % 8 !== 0) {
    throw new RangeError(`MessageCache: the allocator gave ${length} bytes at offset ${offset} for a chunk of ${bytes} (needs at least that many, at a multiple of 8)`);
  }
  return { buffer, offset };
}
