export { createLogger, REDACT_PATHS, REDACTED } from './logger.js';
export type { Logger, LoggerOptions } from './logger.js';
