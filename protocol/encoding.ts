// The two encodings of protocol v1 (PROTOCOL.md): JSON text frames and
// msgpack binary frames, and their ids on the hot paths.

export type Encoding = 'json' | 'msgpack';
export const ENCODING_JSON = 0;
export const ENCODING_MSGPACK = 1;
export type EncodingId = typeof ENCODING_JSON | typeof ENCODING_MSGPACK;

export function encodingId(e: Encoding): EncodingId {
  return e === 'msgpack' ? ENCODING_MSGPACK : ENCODING_JSON;
}
