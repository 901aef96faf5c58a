import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger, LoggerOptions };

export const REDACTED = '[redacted]';

/**
 * Field paths that may carry secret material anywhere in a log record. Redaction is a
 * second line of defence: code must not log values in the first place, but a stray
 * request body or header must never leak one either.
 */
export const REDACT_PATHS: readonly string[] = [
  'value',
  'values',
  'data',
  'pin',
  'password',
  'token',
  'secret',
  'privateKey',
  '*.value',
  '*.values',
  '*.data',
  '*.pin',
  '*.password',
  '*.token',
  '*.secret',
  '*.privateKey',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-sigil-token"]',
  'req.body',
  'res.headers["set-cookie"]',
];

/** One JSON logger per process; `name` identifies the component (control-plane, agent). */
export function createLogger(name: string, level = 'info', destination?: pino.DestinationStream): Logger {
  const options: LoggerOptions = {
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
