// The size limits of the agent protocol, shared by the control plane and the agent so both
// sides agree (docs/agent-protocol.md, "Limits"; docs/decisions/009-paged-desired-state.md).
//
//   secret payload (REST) ≤ MAX_SECRET_PAYLOAD_BYTES
//   one DesiredSecret     ≤ MAX_SECRET_PAYLOAD_BYTES + DESIRED_SECRET_OVERHEAD_BYTES
//   one page of secrets   ≤ DESIRED_STATE_PAGE_BYTES (and always at least one secret)
//   any gRPC message      ≤ MAX_AGENT_MESSAGE_BYTES, sent or received, on either side

const MiB = 1024 * 1024;

/** Kubernetes refuses a Secret whose keys and values add up to more than 1 MiB. */
export const MAX_SECRET_DATA_BYTES = 1 * MiB;

/**
 * The largest encoded secret payload (the JSON of base64 values that is sealed, @sigil/envelope
 * encodeSecretPayload). One 1 MiB value encodes to about 1.33 MiB; a secret whose many tiny keys
 * blow the encoding up beyond this is refused at the API even under 1 MiB of data.
 */
export const MAX_SECRET_PAYLOAD_BYTES = 1.5 * MiB;

/**
 * An upper bound of what one DesiredSecret costs beyond its ciphertext: SGE1 header, wrapped
 * data key, IV and GCM tag (< 100 bytes), names and ids at their longest (project id, app,
 * secret twice, secret id, namespace, type: < 800 bytes) and protobuf framing (limits.spec.ts
 * measures it). The control plane sizes pages with it.
 */
export const DESIRED_SECRET_OVERHEAD_BYTES = 1024;

/** Consumers one app (delivery mode inject) may declare at most; each rides on every DesiredSecret of the app. */
export const MAX_APP_CONSUMERS = 64;

/**
 * An upper bound of what one Consumer adds to a DesiredSecret: a 63-character namespace, a
 * 253-character service account and protobuf framing (limits.spec.ts measures it). The control
 * plane adds it per consumer when it sizes parts.
 */
export const CONSUMER_OVERHEAD_BYTES = 330;

/** The byte budget of one DesiredState part (secrets only; the control plane sizes parts by it). */
export const DESIRED_STATE_PAGE_BYTES = 2 * MiB;

/**
 * The largest gRPC message either side sends or accepts (grpc.max_send_message_length and
 * grpc.max_receive_message_length on the server and on every agent channel). A page plus the
 * cluster key envelopes and framing stays far below it.
 */
export const MAX_AGENT_MESSAGE_BYTES = 4 * MiB;

/** Channel / server options that apply the message limit in both directions. */
export const AGENT_MESSAGE_LIMITS = {
  'grpc.max_send_message_length': MAX_AGENT_MESSAGE_BYTES,
  'grpc.max_receive_message_length': MAX_AGENT_MESSAGE_BYTES,
} as const;

/**
 * What every agent channel sets: the message limits, keepalive like the server's (a ping a
 * minute), and grpc-js's own reconnect backoff bounded (its default grows to 120 s). While
 * the channel is not connected, the Sync session waits for it (SyncSession.connectFirst), so
 * this backoff alone decides how soon an agent tries again after a restart or after the
 * control plane reset a connection beyond its handshake bound: at most ~5 s (grpc-js adds
 * ±20% jitter). A refused TCP connection costs the server next to nothing; the agent's own
 * ReconnectBackoff (full jitter, cap 30 s) spaces out streams that the server ended or refused.
 */
export const AGENT_CHANNEL_OPTIONS = {
  ...AGENT_MESSAGE_LIMITS,
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.initial_reconnect_backoff_ms': 500,
  'grpc.max_reconnect_backoff_ms': 5_000,
} as const;

// The chain above must hold; a change that breaks it fails at import, not in the field.
if (MAX_SECRET_PAYLOAD_BYTES + DESIRED_SECRET_OVERHEAD_BYTES + MAX_APP_CONSUMERS * CONSUMER_OVERHEAD_BYTES > DESIRED_STATE_PAGE_BYTES)
  throw new Error('agent protocol limits: one secret must fit a page');
if (DESIRED_STATE_PAGE_BYTES + 64 * 1024 > MAX_AGENT_MESSAGE_BYTES)
  throw new Error('agent protocol limits: a page must fit a message with room for key envelopes');
