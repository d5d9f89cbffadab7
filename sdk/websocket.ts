// The WebSocket constructor the client uses in Node: the platform's where it
// has one (browsers, Node >= 22, Deno, Bun), the `ws` package otherwise.
// The browser bundle replaces this file with websocket.browser.ts (see build.js),
// so `ws` never enters it.
import type { WebSocketConstructor } from './transport';

export function defaultWebSocket(): WebSocketConstructor {
  const platform = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof platform === 'function') return platform;

  return require('ws') as WebSocketConstructor;
}
