// Generators and properties for fuzzing the protocol parsers: hand-encoded
// msgpack of every width (so that uint64, int64, float32, ext types and
// non-string map keys occur, which packr never writes on its own), nesting
// 0..100, commands near valid. Used by test/fuzz-protocol.test.ts (bounded)
// and test/fuzz/protocol.fuzz.ts (`npm run fuzz`, a million cases).
import fc from 'fast-check';
import { dataToJson, packr, parseJsonCommand, parseMsgpackCommand, unpackr, type Command } from '../../protocol/codec';
import { ProtocolError } from '../../protocol/errors';
import { readRawEnvelope } from '../../protocol/msgpack-pub';

export type Node = Uint8Array; // a msgpack value, encoded

const b = (...xs: number[]) => Uint8Array.from(xs);
const cat = (...parts: Uint8Array[]) => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));

function be(n: bigint, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let v = BigInt.asUintN(bytes * 8, n);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** An integer in one of msgpack's widths (possibly a wider one than needed, as Go and Python may write). */
const intNode: fc.Arbitrary<Node> = fc
  .tuple(
    fc.oneof(fc.bigInt(-(2n ** 63n), 2n ** 64n - 1n), fc.bigInt(-(2n ** 54n), 2n ** 54n), fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, -(2n ** 53n) + 1n, -(2n ** 53n), 2n ** 60n, 2n ** 40n, 0n, -1n)),
    fc.constantFrom(0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0),
  )
  .map(([v, tag]) => {
    if (tag === 0) return packr.pack(v >= -(2n ** 63n) && v < 2n ** 64n ? v : 0n);
    const width = tag === 0xcc || tag === 0xd0 ? 1 : tag === 0xcd || tag === 0xd1 ? 2 : tag === 0xce || tag === 0xd2 ? 4 : 8;
    return cat(b(tag), be(v, width)); // truncated to the width: any bit pattern
  });

const floatNode: fc.Arbitrary<Node> = fc.oneof(
  fc.double().map((d) => cat(b(0xcb), Buffer.from(new Float64Array([d]).buffer).reverse())),
  fc.float().map((f) => cat(b(0xca), Buffer.from(new Float32Array([f]).buffer).reverse())),
  fc.constantFrom(b(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), b(0xca, 0xff, 0x80, 0, 0), b(0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0)),
);

const extNode: fc.Arbitrary<Node> = fc.oneof(
  fc.tuple(fc.integer({ min: -128, max: 127 }), fc.constantFrom(1, 2, 4, 8, 16, 12, 0, 3)).chain(([type, len]) =>
    fc.uint8Array({ minLength: len, maxLength: len }).map((body) => {
      const t = type & 0xff;
      const fix: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
      return fix[len] !== undefined ? cat(b(fix[len], t), body) : cat(b(0xc7, len, t), body);
    }),
  ),
  fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15) }).map((d) => packr.pack(d)),
);

const scalarNode: fc.Arbitrary<Node> = fc.oneof(
  fc.constantFrom(b(0xc0), b(0xc2), b(0xc3)),
  intNode,
  floatNode,
  fc.string({ maxLength: 40 }).map((s) => packr.pack(s)),
  fc.fullUnicodeString({ maxLength: 10 }).map((s) => packr.pack(s)),
  fc.uint8Array({ maxLength: 40 }).map((u) => packr.pack(u)),
  extNode,
);

function arrayOf(items: Node[]): Node {
  const n = items.length;
  const head = n < 16 ? b(0x90 | n) : cat(b(0xdc), be(BigInt(n), 2));
  return cat(head, ...items);
}
function mapOf(entries: [Node, Node][]): Node {
  const n = entries.length;
  const head = n < 16 ? b(0x80 | n) : cat(b(0xde), be(BigInt(n), 2));
  return cat(head, ...entries.flat());
}

/** A msgpack data value: scalars, arrays and maps (keys of any type, mostly strings), nested up to `depth`. */
export const dataNode: fc.Arbitrary<Node> = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalarNode, tie('arr'), tie('map')) as fc.Arbitrary<Node>,
  arr: fc.array(tie('node') as fc.Arbitrary<Node>, { maxLength: 5 }).map(arrayOf),
  map: fc
    .array(
      fc.tuple(
        fc.oneof({ weight: 6, arbitrary: fc.string({ maxLength: 8 }).map((s) => packr.pack(s)) }, { weight: 1, arbitrary: scalarNode }, { weight: 1, arbitrary: fc.constant(b(0x90)) }),
        tie('node') as fc.Arbitrary<Node>,
      ),
      { maxLength: 5 },
    )
    .map(mapOf),
})).node;

/** Data nested 0..100 levels (arrays or maps) around a node. */
export const deepNode: fc.Arbitrary<Node> = fc.tuple(fc.integer({ min: 0, max: 100 }), fc.boolean(), scalarNode).map(([depth, maps, leaf]) => {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = maps ? mapOf([[packr.pack('k'), v]]) : arrayOf([v]);
  return v;
});

export const anyData: fc.Arbitrary<Node> = fc.oneof(
  { weight: 4, arbitrary: dataNode },
  { weight: 1, arbitrary: deepNode },
  {
    weight: 1,
    arbitrary: fc.anything({ withBigInt: true, withDate: true, withTypedArray: false, withNullPrototype: false, withMap: false, withSet: false, maxDepth: 4 }).map((v) => {
      try {
        return packr.pack(v);
      } catch {
        return b(0xc0);
      }
    }),
  },
);

export const topicArb = fc.oneof(fc.constantFrom('/a', '/f/1', '/f/x.y', '/f/-'), fc.string({ maxLength: 12 }), fc.constant('/' + 'a'.repeat(300)));

/** A msgpack pub command with data as the given bytes; `general` adds a non-scalar field, which takes the general path. */
export function pubFrame(id: unknown, topic: unknown, data: Node, extra: Record<string, unknown>, general: boolean): Uint8Array {
  const entries: [Node, Node][] = [
    [packr.pack('id'), packr.pack(id)],
    [packr.pack('op'), packr.pack('pub')],
    [packr.pack('topic'), packr.pack(topic)],
  ];
  for (const [k, v] of Object.entries(extra)) entries.push([packr.pack(k), packr.pack(v)]);
  if (general) entries.push([packr.pack('meta'), packr.pack([1, { a: 2 }])]);
  entries.push([packr.pack('data'), data]);
  return mapOf(entries);
}

export const extraArb = fc.record(
  {
    ack: fc.oneof(fc.boolean(), fc.constant(null), fc.constant(1)),
    retain: fc.oneof(fc.boolean(), fc.constant(null), fc.constant('yes')),
    ts: fc.oneof(fc.constant(null), fc.maxSafeNat(), fc.integer({ min: -5, max: 5 }), fc.constant(2 ** 60)),
  },
  { requiredKeys: [] },
);

/**
 * The invariant: a pub that is accepted converts to both encodings without
 * throwing. Throws (a failed property) when it does not.
 */
export function checkAcceptedConverts(cmd: Command): void {
  if (cmd.op !== 'pub') return;
  if (cmd.raw !== null) {
    // msgpack publish: msgpack subscribers get raw; JSON subscribers get it decoded and stringified.
    const json = dataToJson(unpackr.unpack(Buffer.from(cmd.raw)));
    JSON.parse(json);
    packr.pack(JSON.parse(json));
  } else {
    const json = dataToJson(cmd.data);
    packr.pack(JSON.parse(json));
    dataToJson(unpackr.unpack(packr.pack(JSON.parse(json))));
  }
}

export type Verdict = { ok: true; op: string; id: unknown; topic?: string } | { ok: false; code: string; id: unknown };

export function verdict(c: Command | ProtocolError): Verdict {
  if (c instanceof ProtocolError) return { ok: false, code: c.code, id: c.id };
  return c.op === 'pub' ? { ok: true, op: c.op, id: c.id, topic: c.topic } : { ok: true, op: c.op, id: c.id };
}

/** Properties, each a fast-check property; `counts` collects accepted/refused figures. */
export function properties(counts: { accepted: number; refused: number }) {
  return {
    arbitraryBytes: fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      parseJsonCommand(bytes);
      parseMsgpackCommand(bytes);
      readRawEnvelope(bytes);
    }),
    msgpackPub: fc.property(fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null)), topicArb, anyData, extraArb, (id, topic, data, extra) => {
      const fast = parseMsgpackCommand(pubFrame(id, topic, data, extra, false));
      const general = parseMsgpackCommand(pubFrame(id, topic, data, extra, true));
      // The same verdict on the fast and the general path.
      const vf = verdict(fast);
      const vg = verdict(general);
      if (JSON.stringify(vf) !== JSON.stringify(vg)) throw new Error(`paths disagree: fast ${JSON.stringify(vf)}, general ${JSON.stringify(vg)}, data ${Buffer.from(data).toString('hex')}`);
      if (fast instanceof ProtocolError) counts.refused++;
      else {
        counts.accepted++;
        checkAcceptedConverts(fast);
      }
      if (!(general instanceof ProtocolError)) checkAcceptedConverts(general);
    }),
    truncated: fc.property(anyData, fc.nat(), (data, cut) => {
      const frame = pubFrame(1, '/a', data, {}, false);
      const part = frame.subarray(0, cut % (frame.length + 1));
      const c = parseMsgpackCommand(part);
      if (!(c instanceof ProtocolError)) checkAcceptedConverts(c);
      readRawEnvelope(part);
    }),
    jsonPub: fc.property(
      fc.oneof(
        fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
        fc.tuple(fc.integer({ min: 0, max: 5000 }), fc.boolean()).map(([n, maps]) => (maps ? '{"k":'.repeat(n) + '1' + '}'.repeat(n) : '['.repeat(n) + '1' + ']'.repeat(n))),
        fc.constantFrom('1e400', '-1e400', '[1e999]', '{"a":[1,2,{"b":-1e309}]}', '12345678901234567890', '"\\ud800"', '{"__proto__":{"x":1}}'),
        fc.integer({ min: 0, max: 60000 }).map((n) => '['.repeat(n)),
      ),
      topicArb,
      (dataText, topic) => {
        const text = `{"id":1,"op":"pub","topic":${JSON.stringify(topic)},"data":${dataText}}`;
        const c = parseJsonCommand(Buffer.from(text));
        if (c instanceof ProtocolError) counts.refused++;
        else {
          counts.accepted++;
          checkAcceptedConverts(c);
        }
      },
    ),
    packedAnything: fc.property(fc.anything({ withBigInt: true, withDate: true, withTypedArray: true, withNullPrototype: true, withBoxedValues: true, withSparseArray: true, maxDepth: 5 }), (v) => {
      let frame: Uint8Array;
      try {
        frame = packr.pack({ id: 1, op: 'pub', topic: '/a', data: v });
      } catch {
        return;
      }
      const c = parseMsgpackCommand(frame);
      if (!(c instanceof ProtocolError)) checkAcceptedConverts(c);
      parseMsgpackCommand(packr.pack(v));
      let text: string | undefined;
      try {
        text = JSON.stringify({ id: 1, op: 'pub', topic: '/a', data: v });
      } catch {
        return;
      }
      if (text === undefined) return;
      const j = parseJsonCommand(Buffer.from(text));
      if (!(j instanceof ProtocolError)) checkAcceptedConverts(j);
    }),
    sub: fc.property(
      fc.array(fc.oneof(topicArb, fc.anything({ maxDepth: 2 })), { maxLength: 4 }),
      fc.oneof(fc.constant(undefined), fc.dictionary(fc.string({ maxLength: 6 }), fc.anything({ withBigInt: true, maxDepth: 2 }))),
      fc.anything({ maxDepth: 1 }),
      (topics, resume, qos) => {
        const cmd = { id: 2, op: 'sub', topics, resume, qos };
        let frame: Uint8Array | null = null;
        try {
          frame = packr.pack(cmd);
        } catch {
          // not packable
        }
        if (frame !== null) parseMsgpackCommand(frame);
        let text: string | undefined;
        try {
          text = JSON.stringify(cmd);
        } catch {
          return;
        }
        if (text !== undefined) parseJsonCommand(Buffer.from(text));
      },
    ),
  };
}
