// The client side of the agent protocol's Sync stream and the sync logic, shared by the edge
// agent (apps/agent), the test agent (tests/harness) and the bench's simulated agents.
export * from './assembler.js';
export * from './memory-sink.js';
export * from './ownership.js';
export * from './secret-sync.js';
export * from './session.js';
