// The owner's topic table (workgroups/topics.ts): an open-addressing index
// with backward-shift deletion. Checked against a Map doing the same
// operations, over enough topics to grow the index and the rows several
// times and to delete from the middle of long probe runs.
import { TopicTable, topicHash } from '../workgroups/topics';
import { seeded as rng } from './helpers/random';

function checkAgainst(t: TopicTable, ref: Map<string, number>, universe: string[]): void {
  if (t.size !== ref.size) throw new Error(`size ${t.size}, expected ${ref.size}`);
  for (const name of universe) {
    const want = ref.get(name);
    const got = t.find(name);
    if (got !== (want ?? -1)) throw new Error(`find(${name}) = ${got}, expected ${want ?? -1}`);
    if (want !== undefined && t.name(want) !== name) throw new Error(`name(${want}) = ${t.name(want)}, expected ${name}`);
  }
}

describe('TopicTable', () => {
  test('interns, finds and releases like a Map over 60,000 random operations (index and rows grow, ids are reused)', () => {
    const t = new TopicTable();
    const ref = new Map<string, number>();
    const random = rng(42);
    // 6,000 names: the table holds up to a few thousand at once, so the index grows past its first size.
    const universe = Array.from({ length: 6000 }, (_, i) => (i % 3 === 0 ? `user.${i}.inbox` : i % 3 === 1 ? `t${i}` : `prices/eu/${i * 7919}`));
    const used = new Set<number>();
    let maxRows = 0;
    for (let op = 0; op < 60_000; op++) {
      const name = universe[Math.floor(random() * universe.length)];
      // Bias towards interning early (the table fills), then balance (long runs are deleted from).
      const internBias = op < 20_000 ? 0.8 : 0.5;
      if (random() < internBias) {
        const before = ref.get(name);
        const id = t.intern(name);
        // Plain checks in the loop (expect() per operation would dominate the run).
        if (before !== undefined) {
          if (id !== before) throw new Error(`intern(${name}) = ${id}, expected its row ${before}`);
        } else {
          // A fresh row: a non-zero epoch, seq 0, no interest, whatever the row held before.
          if (t.epoch[id] === 0 || t.seq[id] !== 0 || t.interest[id] !== 0 || t.touchedSec[id] !== 0) {
            throw new Error(`fresh row ${id} for ${name} holds epoch ${t.epoch[id]} seq ${t.seq[id]} interest ${t.interest[id]} touched ${t.touchedSec[id]}`);
          }
          if (used.has(id)) throw new Error(`id ${id} given to ${name} is still in use`);
          used.add(id);
          ref.set(name, id);
          t.seq[id] = op + 1;
          t.interest[id] = 5;
          t.touchedSec[id] = 7;
        }
      } else {
        const id = ref.get(name);
        if (id !== undefined) {
          t.release(id);
          ref.delete(name);
          used.delete(id);
        } else if (t.find(name) !== -1) {
          throw new Error(`find(${name}) found a row it does not have`);
        }
      }
      maxRows = Math.max(maxRows, t.rows);
      if (op % 5000 === 4999) checkAgainst(t, ref, universe);
    }
    checkAgainst(t, ref, universe);
    // Ids are reused: rows never exceed the most topics held at once by much.
    expect(maxRows).toBeLessThanOrEqual(universe.length);
    // The index stayed at most 3/4 full and grew beyond its first size.
    expect(t.size * 4).toBeLessThanOrEqual(t.indexSlots * 3);
    expect(t.indexSlots).toBeGreaterThan(2048);
  });

  test('names whose home slots collide are all found, and releasing the first of a run keeps the rest reachable', () => {
    const t = new TopicTable();
    // Find 40 names with the same home slot in the 2,048-slot index (top 11 bits of the Fibonacci hash).
    const home = (name: string) => Math.imul(topicHash(name), 0x9e3779b1) >>> 21;
    const colliding: string[] = [];
    const target = home('seed');
    for (let i = 0; colliding.length < 40; i++) if (home(`c${i}`) === target) colliding.push(`c${i}`);
    const ids = colliding.map((n) => t.intern(n));
    expect(new Set(ids).size).toBe(40);
    colliding.forEach((n, k) => expect(t.find(n)).toBe(ids[k]));
    // Release every other one, starting with the head of the run.
    for (let k = 0; k < 40; k += 2) t.release(ids[k]);
    colliding.forEach((n, k) => expect(t.find(n)).toBe(k % 2 === 0 ? -1 : ids[k]));
    expect(t.size).toBe(20);
    // Releasing twice is harmless; interning again gives a fresh row with a new history.
    t.release(ids[0]);
    expect(t.size).toBe(20);
    const again = t.intern(colliding[0]);
    expect(t.find(colliding[0])).toBe(again);
    expect(t.size).toBe(21);
  });

  test('100,000 topics: every one found after the index has grown six times', () => {
    const t = new TopicTable();
    const ids: number[] = [];
    for (let i = 0; i < 100_000; i++) ids.push(t.intern(`s.${i}`));
    expect(t.size).toBe(100_000);
    expect(t.indexSlots).toBe(262_144);
    for (let i = 0; i < 100_000; i++) if (t.find(`s.${i}`) !== ids[i]) throw new Error(`s.${i} not found`);
    expect(t.find('s.100000')).toBe(-1);
    // Rows grew by half each time: no more than 1.5 x the topics.
    expect(t.epoch.length).toBeLessThan(150_000);
    expect(t.epoch.length).toBeGreaterThanOrEqual(100_000);
  });
});
