// Waiting on the SDK client (sdk/client.ts) in tests: a condition polled
// until it holds, and the next event of a kind.
import type { C10mClient, ClientEvents } from '../../sdk/client';

/** Polls pred() every 10 ms until it holds; throws after `timeoutMs`. */
export async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The next `event` of `c` for which pred() holds; rejects (and stops listening) after `timeoutMs`. */
export function nextEvent<K extends keyof ClientEvents>(c: C10mClient, event: K, pred: (e: ClientEvents[K]) => boolean = () => true, timeoutMs = 15_000): Promise<ClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off(event, on);
      reject(new Error(`no ${String(event)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e: ClientEvents[K]) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      c.off(event, on);
      resolve(e);
    };
    c.on(event, on);
  });
}

/**
 * Publishes `rounds` rounds on `publisher`, each one acked message per topic
 * (`{ round }`) then a pause: load that runs on while a test kills something.
 * `published()` counts the acked messages so far; `done` settles after the last.
 */
export function publishRounds(publisher: C10mClient, topics: string[], rounds: number, pauseMs = 25): { published: () => number; done: Promise<void> } {
  let published = 0;
  const done = (async () => {
    for (let round = 1; round <= rounds; round++) {
      await Promise.all(topics.map((t) => publisher.publish(t, { round })));
      published += topics.length;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return { published: () => published, done };
}
