// Structured logs of the control plane: one JSON line per event.
import pino from 'pino';

export type Logger = pino.Logger;

export function serverLogger(level: string): Logger {
  return pino({ level, base: { role: 'control' } }, pino.destination({ fd: 1, sync: true }));
}
