// Topic patterns of the subscribe and publish claims (protocol/patterns.ts)
// and the grant table that interns them (workgroups/auth.ts): a table of
// cases, properties over generated topics, and reference counting.
import fc from 'fast-check';
import { PatternSet, compilePattern, matchPattern, type CompiledPattern } from '../protocol/patterns';
import { isValidTopic } from '../protocol/topic';
import { GrantTable, Verifier, isFailure } from '../workgroups/auth';

function p(source: string): CompiledPattern {
  const c = compilePattern(source);
  if (typeof c === 'string') throw new Error(c);
  return c;
}

test.each([
  ['/a/b', '/a/b', null, true],
  ['/a/b', '/a/bc', null, false],
  ['/a/b', '/a', null, false],
  ['/a/b', '/a/b/c', null, false],
  ['/a/*', '/a/b', null, true],
  ['/a/*', '/a/b/c', null, false],
  ['/a/*', '/a', null, false],
  ['/a/*/c', '/a/xyz/c', null, true],
  ['/a/>', '/a/b', null, true],
  ['/a/>', '/a/b/c/d', null, true],
  ['/a/>', '/a', null, false],
  ['/>', '/anything/at/all', null, true],
  ['/user/{sub}/>', '/user/alice/inbox', 'alice', true],
  ['/user/{sub}/>', '/user/alice/inbox', 'bob', false],
  ['/user/{sub}/>', '/user/alice/inbox', null, false],
  ['/user/{sub}/>', '/user/alic/inbox', 'alice', false],
  ['/u/x-{sub}-y', '/u/x-alice-y', 'alice', true],
  ['/u/x-{sub}-y', '/u/x-alice-z', 'alice', false],
  // A subject with a / cannot reach into another segment.
  ['/user/{sub}', '/user/a/b', 'a/b', false],
] as const)('%s against %s (sub %s): %s', (pattern, topic, sub, expected) => {
  expect(matchPattern(p(pattern), topic, sub)).toBe(expected);
});

test.each([
  ['a/b', /start with/],
  ['/a//b', /empty segment/],
  ['/a/>/b', /last segment/],
  ['/a/b*', /outside/],
  ['/a/{sub}{sub}', /two \{sub\}/],
  ['/a/b c', /outside/],
])('pattern %s is refused', (pattern, re) => {
  expect(compilePattern(pattern)).toMatch(re);
});

test('claims: absent means nothing; a non-array or a bad pattern is an error', () => {
  expect(PatternSet.compile(undefined, 'subscribe')).toBe(PatternSet.EMPTY);
  expect(PatternSet.EMPTY.allows('/a', null)).toBe(false);
  expect(PatternSet.compile('/a', 'subscribe')).toMatch(/must be an array/);
  expect(PatternSet.compile(['/a', 7], 'publish')).toMatch(/publish claim: a topic pattern must be a string/);
});

const segment = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,8}$/);
const topicOf = (segs: string[]) => '/' + segs.join('/');

test('property: a topic matches itself, with any segment made *, and any tail made >', () => {
  fc.assert(
    fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }), fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), fc.nat(7), (segs, stars, cut) => {
      const topic = topicOf(segs);
      fc.pre(isValidTopic(topic));
      expect(matchPattern(p(topic), topic, null)).toBe(true);
      expect(matchPattern(p(topicOf(segs.map((s, i) => (stars[i] ? '*' : s)))), topic, null)).toBe(true);
      const k = cut % segs.length;
      expect(matchPattern(p(topicOf([...segs.slice(0, k), '>'])), topic, null)).toBe(true);
      // One more segment never matches a pattern without >.
      expect(matchPattern(p(topic), topic + '/x', null)).toBe(false);
    }),
    { numRuns: 500 },
  );
});

test('property: a pattern without wildcards matches exactly one topic', () => {
  fc.assert(
    fc.property(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.array(segment, { minLength: 1, maxLength: 5 }), (a, b) => {
      expect(matchPattern(p(topicOf(a)), topicOf(b), null)).toBe(topicOf(a) === topicOf(b));
    }),
    { numRuns: 500 },
  );
});

test('grants are interned by their claims and freed with their last reference', () => {
  const t = new GrantTable();
  const a = t.acquire(['/user/{sub}/>'], ['/x']);
  const b = t.acquire(['/user/{sub}/>'], ['/x']);
  const c = t.acquire(['/other'], null);
  if (typeof a === 'string' || typeof b === 'string' || typeof c === 'string') throw new Error('compile failed');
  expect(a).toBe(b);
  expect(c.id).not.toBe(a.id);
  expect(t.size).toBe(2);
  t.release(a.id);
  expect(t.get(a.id)).toBe(a);
  t.release(b.id);
  expect(t.get(a.id)).toBeUndefined();
  expect(t.size).toBe(1);
  // The freed id is reused.
  const d = t.acquire(['/d'], null);
  if (typeof d === 'string') throw new Error('compile failed');
  expect(d.id).toBe(a.id);
  expect(t.acquire(['bad'], null)).toMatch(/start with/);
});

test('fuzz: the verifier refuses any string that is not a token it signed, and never throws', async () => {
  const v = new Verifier(
    {
      mode: 'jwt',
      secret: 'fuzz-secret-of-more-than-thirty-two-bytes-0123',
      publicKeyPem: '',
      jwksUrl: '',
      jwksCooldownSeconds: 30,
      issuer: '',
      audience: '',
      clockSkewSeconds: 30,
      timeoutSeconds: 10,
      apiKeys: [],
    },
    new GrantTable(),
  );
  const b64 = (s: string) => Buffer.from(s).toString('base64url');
  const tokens = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.tuple(fc.json(), fc.json(), fc.string({ maxLength: 60 })).map(([h, p, sig]) => `${b64(h)}.${b64(p)}.${sig}`),
    fc.tuple(fc.constantFrom('HS256', 'none', 'RS256', 'ES256', 'HS512'), fc.json()).map(([alg, p]) => `${b64(JSON.stringify({ alg }))}.${b64(p)}.`),
  );
  await fc.assert(
    fc.asyncProperty(tokens, async (t) => {
      const r = await v.verify(t, Math.floor(Date.now() / 1000));
      expect(isFailure(r)).toBe(true);
    }),
    { numRuns: 400 },
  );
});
