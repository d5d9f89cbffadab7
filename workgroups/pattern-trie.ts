// A trie of wildcard patterns (protocol/wildcard.ts) by segment: a topic
// is matched by one walk of its segments, visiting the literal child, the
// `*` child and the `>` values at each level, whatever the number of
// patterns. Built once per pattern (add), never per message: callers match
// a topic once and keep the result (workgroups/pattern-owner.ts, pattern-subs.ts).

class TrieNode<V> {
  readonly children = new Map<string, TrieNode<V>>();
  star: TrieNode<V> | null = null;
  /** Values of patterns that end here (`/a/b`, `/a/*`). */
  readonly here: V[] = [];
  /** Values of patterns ending in `>` here: one or more segments follow. */
  readonly rest: V[] = [];

  empty(): boolean {
    return this.children.size === 0 && this.star === null && this.here.length === 0 && this.rest.length === 0;
  }
}

export class PatternTrie<V> {
  private readonly root = new TrieNode<V>();
  private count = 0;

  /** Values held (a value added twice counts twice). */
  get size(): number {
    return this.count;
  }

  /** Adds `value` under a valid pattern. */
  add(pattern: string, value: V): void {
    const parts = pattern.split('/');
    let n = this.root;
    for (let i = 1; i < parts.length; i++) {
      const s = parts[i];
      if (s === '>') {
        n.rest.push(value);
        this.count++;
        return;
      }
      if (s === '*') n = n.star ??= new TrieNode<V>();
      else {
        let c = n.children.get(s);
        if (c === undefined) n.children.set(s, (c = new TrieNode<V>()));
        n = c;
      }
    }
    n.here.push(value);
    this.count++;
  }

  /** Removes one `value` added under `pattern` (by identity); false when it was not there. Prunes empty nodes. */
  remove(pattern: string, value: V): boolean {
    const parts = pattern.split('/');
    const path: TrieNode<V>[] = [this.root];
    let n: TrieNode<V> | null | undefined = this.root;
    let list: V[] | null = null;
    for (let i = 1; i < parts.length && n !== null && n !== undefined; i++) {
      const s = parts[i];
      if (s === '>') {
        list = n.rest;
        break;
      }
      n = s === '*' ? n.star : n.children.get(s);
      if (n !== null && n !== undefined) path.push(n);
    }
    if (n === null || n === undefined) return false;
    list ??= n.here;
    const at = list.indexOf(value);
    if (at < 0) return false;
    list[at] = list[list.length - 1];
    list.pop();
    this.count--;
    for (let i = path.length - 1; i > 0; i--) {
      if (!path[i].empty()) break;
      const parent = path[i - 1];
      const s = parts[i];
      if (s === '*') parent.star = null;
      else parent.children.delete(s);
    }
    return true;
  }

  /** Calls visit for every value whose pattern matches the valid topic. */
  match(topic: string, visit: (v: V) => void): void {
    const parts = topic.split('/');
    this.walk(this.root, parts, 1, visit);
  }

  private walk(n: TrieNode<V>, parts: string[], i: number, visit: (v: V) => void): void {
    if (i < parts.length) for (const v of n.rest) visit(v);
    if (i === parts.length) {
      for (const v of n.here) visit(v);
      return;
    }
    const c = n.children.get(parts[i]);
    if (c !== undefined) this.walk(c, parts, i + 1, visit);
    if (n.star !== null) this.walk(n.star, parts, i + 1, visit);
  }
}
