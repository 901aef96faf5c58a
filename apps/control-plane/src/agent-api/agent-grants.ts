import { AgentApiErrorCode, type Grant } from '@sigil/agent-protocol';
import { dns1123LabelProblem, dns1123SubdomainProblem } from '../common/kubernetes-names.js';
import type { ReportedGrant } from '../injection/grants.service.js';
import { grpcError } from './grpc-errors.js';

/** Grants in one Grants message at most (an agent sends them every few seconds, coalesced per pod). */
export const MAX_GRANTS_PER_MESSAGE = 1_000;
/** A grant's time may be this far ahead of ours (clock skew); beyond, it is taken as now. */
const MAX_SKEW_MS = 5 * 60_000;
/** Versions are PostgreSQL integers: a larger one would fail the whole batch. */
const MAX_VERSION = 2 ** 31 - 1;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The grants of a Grants message, checked before anything is kept: a secret id, a version, a
 * namespace (DNS-1123 label), a service account and a pod name (DNS-1123 subdomains), a version
 * that fits an integer column. A malformed grant is left out and counted, not fatal: grants are a view, and one
 * bad entry must not cost the agent its stream. Too many in one message end the stream
 * (INVALID_ARGUMENT). Whether the secret is delivered to the cluster is checked where they are
 * written (GrantsRepository.record).
 */
export function parseGrants(grants: Grant[], now = Date.now()): { grants: ReportedGrant[]; malformed: number } {
  if (grants.length > MAX_GRANTS_PER_MESSAGE) {
    throw grpcError(AgentApiErrorCode.TooManyGrants, `at most ${MAX_GRANTS_PER_MESSAGE} grants per Grants message`);
  }
  const out: ReportedGrant[] = [];
  for (const g of grants) {
    if (
      !UUID.test(g.secretId) ||
      g.version < 1 ||
      g.version > MAX_VERSION ||
      dns1123LabelProblem(g.namespace) !== undefined ||
      dns1123SubdomainProblem(g.serviceAccount) !== undefined ||
      // Pod names are DNS-1123 subdomains: nothing else (a NUL byte) may reach the batch's SQL.
      dns1123SubdomainProblem(g.pod) !== undefined
    )
      continue;
    const at = g.lastAt?.getTime();
    out.push({
      secretId: g.secretId,
      version: g.version,
      namespace: g.namespace,
      serviceAccount: g.serviceAccount,
      pod: g.pod,
      count: Math.max(1, g.count),
      lastAt: new Date(at === undefined || Number.isNaN(at) || at > now + MAX_SKEW_MS ? now : at),
    });
  }
  return { grants: out, malformed: grants.length - out.length };
}
