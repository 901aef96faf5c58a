import { X509Certificate } from 'node:crypto';
import type { ClientReadableStream, ServiceError, status } from '@grpc/grpc-js';
import {
  AGENT_MESSAGE_LIMITS,
  AgentServiceClient,
  agentChannelCredentials,
  createCsrForKey,
  createTlsKeyAndCsr,
  derToPem,
  type EnrollResponse,
  type GetDesiredStateResponse,
  type RenewCertificateResponse,
  type ReportStatusResponse,
  SecretState,
  unary,
  type WatchResponse,
} from '@sigil/agent-protocol';
import { decodeSecretPayload, generateAgentKeyPair, openClusterKeyEnvelope, openSecretEnvelope } from '@sigil/envelope';
import { fetchDesiredState, type DesiredState } from '../../apps/agent/src/desired-state.js';

export type Credential = { $case: 'bootstrapToken'; value: string } | { $case: 'serviceAccountToken'; value: string };

/** A call's failure as the tests look at it: gRPC status and Sigil's error code. */
export interface CallFailure {
  code: status;
  errorCode: string | undefined;
  details: string;
}

export function failureOf(err: unknown): CallFailure {
  const e = err as ServiceError;
  const ec = e.metadata?.get('sigil-error-code')[0];
  return { code: e.code, errorCode: typeof ec === 'string' ? ec : undefined, details: e.details };
}

/** An open Watch: what it received, and how it ended. */
export class WatchSession {
  readonly generations: bigint[] = [];
  readonly ended: Promise<CallFailure | 'ok'>;

  constructor(readonly stream: ClientReadableStream<WatchResponse>) {
    stream.on('data', (m: WatchResponse) => this.generations.push(m.desiredGeneration));
    this.ended = new Promise((resolve) => {
      stream.on('error', (err) => resolve(failureOf(err)));
      stream.on('end', () => resolve('ok'));
    });
  }

  async waitFor(predicate: (gens: bigint[]) => boolean, timeoutMs = 5_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!predicate(this.generations)) {
      if (Date.now() > until) throw new Error(`watch did not see the expected generations (saw ${this.generations.join(',')})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  cancel(): void {
    this.stream.cancel();
  }
}

/**
 * An agent as the protocol sees it, over real TLS: its own keys (made here, never sent), Enroll
 * with a credential, then mTLS calls with the certificate it got.
 */
export class TestAgent {
  readonly delivery = generateAgentKeyPair();
  tls: { keyPem: string; csrDer: Buffer } | undefined;
  certificatePem: string | undefined;
  enrollment: EnrollResponse | undefined;
  private authed: AgentServiceClient | undefined;

  constructor(
    readonly address: string,
    readonly caPem: string,
    readonly cluster: string,
  ) {}

  /** A client with no certificate (all an agent has before enrolling). */
  anonymous(): AgentServiceClient {
    return new AgentServiceClient(this.address, agentChannelCredentials(this.caPem), AGENT_MESSAGE_LIMITS);
  }

  async enroll(credential: Credential, overrides: { csrDer?: Buffer; deliveryPublicKeyDer?: Buffer } = {}): Promise<EnrollResponse> {
    this.tls ??= createTlsKeyAndCsr(this.cluster);
    const client = this.anonymous();
    try {
      const tls = this.tls;
      const res = await unary<EnrollResponse>((cb) =>
        client.enroll(
          {
            cluster: this.cluster,
            credential,
            csrDer: overrides.csrDer ?? tls.csrDer,
            deliveryPublicKeyDer: overrides.deliveryPublicKeyDer ?? this.delivery.publicKeyDer,
            agentVersion: 'test-agent/1',
          },
          cb,
        ),
      );
      this.enrollment = res;
      this.useCertificate(res.certificateDer);
      return res;
    } finally {
      client.close();
    }
  }

  useCertificate(der: Buffer): void {
    this.certificatePem = derToPem(der, 'CERTIFICATE');
    this.authed?.close();
    this.authed = undefined;
  }

  /** A client presenting this agent's certificate. */
  client(): AgentServiceClient {
    if (!this.tls || !this.certificatePem) throw new Error('enroll first');
    this.authed ??= new AgentServiceClient(
      this.address,
      agentChannelCredentials(this.caPem, { keyPem: this.tls.keyPem, certificatePem: this.certificatePem }),
      AGENT_MESSAGE_LIMITS,
    );
    return this.authed;
  }

  watch(appliedGeneration = 0n): WatchSession {
    return new WatchSession(this.client().watch({ appliedGeneration, agentVersion: 'test-agent/1' }));
  }

  /** One page of the listing, as the control plane answers it. */
  desiredStatePage(req: { generation?: bigint; pageToken?: string } = {}): Promise<GetDesiredStateResponse> {
    return unary<GetDesiredStateResponse>((cb) =>
      this.client().getDesiredState({ generation: req.generation ?? 0n, pageToken: req.pageToken ?? '' }, cb),
    );
  }

  /** The complete desired state, every page, listed by the agent's own code. */
  desiredState(): Promise<DesiredState> {
    return fetchDesiredState(this.client());
  }

  async renew(): Promise<X509Certificate> {
    const csrDer = createCsrForKey(this.cluster, this.tls!.keyPem);
    const res = await unary<RenewCertificateResponse>((cb) => this.client().renewCertificate({ csrDer }, cb));
    this.useCertificate(res.certificateDer);
    return new X509Certificate(res.certificateDer);
  }

  /**
   * What a real agent does on a notification: fetch the complete desired state (every page, with
   * the agent's own fetchDesiredState), open every envelope with
   * the cluster keys only this agent can unwrap, and report it applied. Returns the values by
   * `namespace/name`, and the generation.
   */
  async sync(
    opts: { fail?: (target: string) => string | undefined } = {},
  ): Promise<{ generation: bigint; secrets: Map<string, Record<string, string>> }> {
    const state = await this.desiredState();
    const keys = new Map(
      state.clusterKeyEnvelopes.map((e) => {
        const k = openClusterKeyEnvelope(this.delivery.privateKeyPem, e);
        return [k.version, k.key] as const;
      }),
    );
    const secrets = new Map<string, Record<string, string>>();
    const statuses = state.secrets.map((s) => {
      const target = `${s.target!.namespace}/${s.target!.name}`;
      const failure = opts.fail?.(target);
      if (!failure) {
        const payload = openSecretEnvelope(s.envelope, keys, {
          projectId: s.projectId,
          app: s.app,
          secret: s.secret,
          secretId: s.secretId,
          version: s.version,
        });
        secrets.set(target, Object.fromEntries([...decodeSecretPayload(payload)].map(([k, v]) => [k, v.toString()])));
      }
      return {
        target: s.target,
        secretId: s.secretId,
        version: s.version,
        generation: s.generation,
        state: failure ? SecretState.SECRET_STATE_FAILED : SecretState.SECRET_STATE_APPLIED,
        reason: failure ?? '',
        message: '',
      };
    });
    await unary<ReportStatusResponse>((cb) => this.client().reportStatus({ appliedGeneration: state.generation, secrets: statuses }, cb));
    return { generation: state.generation, secrets };
  }

  close(): void {
    this.authed?.close();
  }
}

export { unary };
