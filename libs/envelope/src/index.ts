export * from './format.js';
export * from './agent-crypto.js';
export * from './payload.js';
