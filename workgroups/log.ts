// Structured logs of a workgroup: one JSON line per event, never per message.
import pino from 'pino';

export type Logger = pino.Logger;

export function workgroupLogger(id: number, level: string): Logger {
  return pino({ level, base: { wg: id } }, pino.destination({ fd: 1, sync: true }));
}
