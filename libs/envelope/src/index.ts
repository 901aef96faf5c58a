export * from './format.js';
export * from './agent-crypto.js';
