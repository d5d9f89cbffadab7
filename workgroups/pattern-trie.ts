// A trie of wildcard patterns (protocol/wildcard.ts) by segment: a topic
// is matched by one walk of its segments, visiting the literal child, the
// `*` child and the `>` values at each level, whatever the number of
// patterns. Built once per pattern (add), never per message: callers match
// a topic once and keep the result (workgroups/pattern-owner.ts, pattern-subs.ts).

// Fields are made when first needed: most nodes of a large set of patterns hold one child and nothing else.
class TrieNode<V> {
  children: Map<string, TrieNode<V>> | null = null;
  star: TrieNode<V> | null = null;
  /** Values of patterns that end here (`/a/b`, `/a/*`). */
  here: V[] | null = null;
  /** Values of patterns ending in `>` here: one or more segments follow. */
  rest: V[] | null = null;

  empty(): boolean {
    return (this.children === null || this.children.size === 0) && this.star === null && (this.here === null || this.here.length === 0) && (this.rest === null || this.rest.length === 0);
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
        (n.rest ??= []).push(value);
        this.count++;
        return;
      }
      if (s === '*') n = n.star ??= new TrieNode<V>();
      else {
        const children = (n.children ??= new Map());
        let c = children.get(s);
        if (c === undefined) children.set(s, (c = new TrieNode<V>()));
        n = c;
      }
    }
    (n.here ??= []).push(value);
    this.count++;
  }

  /** Removes one `value` added under `pattern` (by identity); false when it was not there. Prunes empty nodes. */
  remove(pattern: string, value: V): boolean {
    const parts = pattern.split('/');
    const path: TrieNode<V>[] = [this.root];
    let n: TrieNode<V> | null | undefined = this.root;
    let list: V[] | null | undefined;
    for (let i = 1; i < parts.length && n !== null && n !== undefined; i++) {
      const s = parts[i];
      if (s === '>') {
        list = n.rest;
        break;
      }
      n = s === '*' ? n.star : n.children?.get(s);
      if (n !== null && n !== undefined) path.push(n);
    }
    if (n === null || n === undefined) return false;
    if (list === undefined) list = n.here;
    if (list === null) return false;
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
      else parent.children?.delete(s);
    }
    return true;
  }

  /** Calls visit for every value whose pattern matches the valid topic. */
  match(topic: string, visit: (v: V) => void): void {
    const parts = topic.split('/');
    this.walk(this.root, parts, 1, visit);
  }

  private walk(n: TrieNode<V>, parts: string[], i: number, visit: (v: V) => void): void {
    if (i < parts.length && n.rest !== null) for (const v of n.rest) visit(v);
    if (i === parts.length) {
      if (n.here !== null) for (const v of n.here) visit(v);
      return;
    }
    const c = n.children?.get(parts[i]);
    if (c !== undefined) this.walk(c, parts, i + 1, visit);
    if (n.star !== null) this.walk(n.star, parts, i + 1, visit);
  }
}
