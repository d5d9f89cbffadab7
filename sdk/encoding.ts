// The SDK's names for the protocol's encodings and delivery qualities,
// declared here so that the SDK's published types never reference
// protocol/codec.ts: its .d.ts pulls in msgpackr's types, which need
// @types/node, and a browser app compiled with "types": [] has none.
import type { Encoding as ProtocolEncoding, Qos as ProtocolQos } from '../protocol/codec';

/** 'json' (text frames) or 'msgpack' (binary frames). */
export type Encoding = 'json' | 'msgpack';
/** 'guaranteed' (resumed without loss as far as the cache reaches) or 'standard' (live). */
export type Qos = 'standard' | 'guaranteed';

// Compile-time check: these stay the protocol's (each side assignable to the other).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const encodingMatches: Same<Encoding, ProtocolEncoding> = true;
const qosMatches: Same<Qos, ProtocolQos> = true;
void encodingMatches;
void qosMatches;
