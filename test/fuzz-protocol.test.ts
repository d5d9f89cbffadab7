// Property-based checks of the protocol parsers (fixed seed, bounded runs;
// `npm run fuzz` runs the same properties a million times): they never
// throw, the msgpack fast and general paths agree, and nothing accepted may
// later fail to encode for a subscriber of the other encoding.
import fc from 'fast-check';
import { properties } from './helpers/fuzz';

const SEED = 20240611;
const counts = { accepted: 0, refused: 0 };
const p = properties(counts);

test.each([
  ['arbitrary bytes never make a parser throw', p.arbitraryBytes, 3000],
  ['msgpack pubs of every width, depth and extension: fast and general path agree; accepted data converts', p.msgpackPub, 3000],
  ['truncated msgpack pubs', p.truncated, 2000],
  ['JSON pubs, nested up to 5,000 levels and with 60,000 open brackets: accepted data converts', p.jsonPub, 1500],
  ['anything msgpackr or JSON.stringify makes, as data', p.packedAnything, 1500],
  ['sub commands with arbitrary topics and resume maps', p.sub, 1500],
] as const)('%s', (_name, prop, numRuns) => {
  fc.assert(prop as fc.IPropertyWithHooks<unknown[]>, { seed: SEED, numRuns });
});

test('both verdicts occur (the generators reach the rule on both sides)', () => {
  expect({ ...counts, enough: counts.accepted > 300 && counts.refused > 300 }).toMatchObject({ enough: true });
});
