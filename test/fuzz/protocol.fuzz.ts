// `npm run fuzz`: the properties of test/fuzz-protocol.test.ts a million
// times (FUZZ_CASES), then FUZZ_PUBLISHES generated publishes end to end
// against a real server: each accepted one reaches a JSON and a msgpack
// subscriber, each refused one reaches nobody, and the node stays up.
// Prints cases run, accepted/refused and crashes found.
import fc from 'fast-check';
import { dataToJson, packr, unpackr } from '../../protocol/codec';
import { decodeBinaryFrame, isBinaryFrame } from '../../protocol/frame';
import { anyData, properties } from '../helpers/fuzz';
import { connect } from '../helpers/client';
import { connectIn } from '../helpers/workgroups';
import { startServer } from '../helpers/server';

const CASES = Number(process.env.FUZZ_CASES ?? 1_000_000);
const PUBLISHES = Number(process.env.FUZZ_PUBLISHES ?? 20_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20240611);
const counts = { accepted: 0, refused: 0 };
const crashes: string[] = [];
const figures: Record<string, unknown> = {};

test('properties, a million cases', () => {
  const p = properties(counts);
  // Shares of CASES per property (the JSON and anything ones are the slow ones).
  const plan: [string, fc.IPropertyWithHooks<unknown[]>, number][] = [
    ['arbitraryBytes', p.arbitraryBytes as fc.IPropertyWithHooks<unknown[]>, 0.3],
    ['msgpackPub', p.msgpackPub as fc.IPropertyWithHooks<unknown[]>, 0.35],
    ['truncated', p.truncated as fc.IPropertyWithHooks<unknown[]>, 0.15],
    ['jsonPub', p.jsonPub as fc.IPropertyWithHooks<unknown[]>, 0.08],
    ['packedAnything', p.packedAnything as fc.IPropertyWithHooks<unknown[]>, 0.07],
    ['sub', p.sub as fc.IPropertyWithHooks<unknown[]>, 0.05],
  ];
  const started = Date.now();
  let run = 0;
  for (const [name, prop, share] of plan) {
    const numRuns = Math.ceil(CASES * share);
    const t0 = Date.now();
    const out = fc.check(prop, { seed: SEED, numRuns });
    run += out.numRuns;
    if (out.failed) crashes.push(`${name}: ${fc.defaultReportMessage(out)}`);
    figures[name] = { cases: out.numRuns, seconds: (Date.now() - t0) / 1000 };
  }
  figures.properties = { cases: run, seconds: (Date.now() - started) / 1000, accepted: counts.accepted, refused: counts.refused };
  expect(crashes).toEqual([]);
});

test('publishes end to end: accepted ones reach both encodings, refused ones nobody', async () => {
  const server = await startServer(['--workgroups', '2']);
  const started = Date.now();
  try {
    const jsonSub = (await connectIn(server, 0, 'json')).client;
    const msgpackSub = (await connectIn(server, 1, 'msgpack')).client;
    let pub = (await connectIn(server, 0, 'msgpack')).client;
    const raw: Buffer[] = [];
    msgpackSub.ws.on('message', (d: Buffer, bin: boolean) => {
      if (bin && isBinaryFrame(d)) raw.push(Buffer.from(decodeBinaryFrame(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)).payload));
    });
    await jsonSub.sub(['/fuzz']);
    await msgpackSub.sub(['/fuzz']);
    const samples = fc.sample(anyData, { seed: SEED, numRuns: PUBLISHES });
    const accepted: Buffer[] = [];
    let refused = 0;
    // A fresh publisher session per window: a session is closed after 100 refused commands (1008).
    const WINDOW = 50;
    for (let i = 0; i < samples.length; i += WINDOW) {
      if (i > 0) {
        await pub.close();
        pub = await connect(server.url(), 'msgpack');
      }
      const batch = samples.slice(i, i + WINDOW);
      const ids = batch.map((_, k) => i + k + 1);
      for (const [k, data] of batch.entries()) {
        const frame = Buffer.concat([
          Buffer.from([0x85]),
          packr.pack('id'),
          packr.pack(ids[k]),
          packr.pack('op'),
          packr.pack('pub'),
          packr.pack('topic'),
          packr.pack('/fuzz'),
          packr.pack('ack'),
          packr.pack(true),
          packr.pack('data'),
          Buffer.from(data),
        ]);
        pub.sendRaw(frame);
      }
      await pub.until(() => ids.every((id) => pub.replies.has(id)), 20_000, `replies ${i}`);
      for (const [k, id] of ids.entries()) {
        const r = pub.replies.get(id) as Record<string, unknown>;
        if (r.ok === true) accepted.push(Buffer.from(batch[k]));
        else if ((r.error as { code: string }).code === 'BAD_DATA' || (r.error as { code: string }).code === 'PAYLOAD_TOO_LARGE') refused++;
        else crashes.push(`publish ${id}: ${JSON.stringify(r)} for ${Buffer.from(batch[k]).toString('hex').slice(0, 200)}`);
        pub.replies.delete(id);
      }
    }
    await jsonSub.until(() => jsonSub.deliveries.length >= accepted.length, 30_000, 'json deliveries');
    await msgpackSub.until(() => raw.length >= accepted.length, 30_000, 'msgpack deliveries');
    expect(jsonSub.deliveries.length).toBe(accepted.length);
    expect(raw.length).toBe(accepted.length);
    for (const [i, bytes] of accepted.entries()) {
      if (!raw[i].equals(bytes)) crashes.push(`msgpack delivery ${i} differs`);
      const want = JSON.parse(dataToJson(unpackr.unpack(bytes)));
      if (JSON.stringify(jsonSub.deliveries[i].data) !== JSON.stringify(want)) crashes.push(`json delivery ${i} differs: ${JSON.stringify(jsonSub.deliveries[i].data).slice(0, 100)}`);
    }
    expect(server.proc.exitCode).toBeNull();
    for (const c of [jsonSub, msgpackSub, pub]) {
      expect(c.closeCode).toBeNull();
      expect((await c.request({ op: 'ping' })).ok).toBe(true);
    }
    figures.endToEnd = { publishes: samples.length, accepted: accepted.length, refused, seconds: (Date.now() - started) / 1000 };
    for (const c of [jsonSub, msgpackSub, pub]) await c.close();
  } finally {
    expect(await server.stop()).toBe(0);
  }
  expect(crashes).toEqual([]);
});

afterAll(() => {
  // The fixed output of `npm run fuzz`.
  console.log(JSON.stringify({ seed: SEED, ...figures, crashesFound: crashes.length, crashes: crashes.slice(0, 10) }, null, 2));
});
