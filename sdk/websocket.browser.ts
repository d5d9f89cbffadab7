// Browser build of websocket.ts: the platform WebSocket, nothing else.
import type { WebSocketConstructor } from './transport';

export function defaultWebSocket(): WebSocketConstructor {
  const platform = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof platform !== 'function') throw new Error('this environment has no WebSocket; pass options.WebSocket');
  return platform;
}
