import { ApiTokens1763800000000 } from './1763800000000-api-tokens.js';
import { KeyCustody1763800000001 } from './1763800000001-key-custody.js';
import { OperatorApi1763800000002 } from './1763800000002-operator-api.js';
import { ClusterCa1763800000003 } from './1763800000003-cluster-ca.js';
import { AgentEnrollment1763800000004 } from './1763800000004-agent-enrollment.js';
import { Delivery1763800000005 } from './1763800000005-delivery.js';
import { SecretOwnership1763800000006 } from './1763800000006-secret-ownership.js';
import { AuditHmacChain1763800000007 } from './1763800000007-audit-hmac-chain.js';
import { Injection1763800000008 } from './1763800000008-injection.js';
import { GeneratedSecrets1763800000009 } from './1763800000009-generated-secrets.js';
import { DatabaseConnections1763800000010 } from './1763800000010-database-connections.js';
import { DynamicSecrets1763800000011 } from './1763800000011-dynamic-secrets.js';
import { DerivedRowsWithoutForeignKeys1763800000012 } from './1763800000012-derived-rows-without-foreign-keys.js';
import { ConsoleSessions1763800000013 } from './1763800000013-console-sessions.js';

/** Applied in order at start-up; never edit one that has shipped, add a new one. */
export const migrations = [
  ApiTokens1763800000000,
  KeyCustody1763800000001,
  OperatorApi1763800000002,
  ClusterCa1763800000003,
  AgentEnrollment1763800000004,
  Delivery1763800000005,
  SecretOwnership1763800000006,
  AuditHmacChain1763800000007,
  Injection1763800000008,
  GeneratedSecrets1763800000009,
  DatabaseConnections1763800000010,
  DynamicSecrets1763800000011,
  DerivedRowsWithoutForeignKeys1763800000012,
  ConsoleSessions1763800000013,
];
