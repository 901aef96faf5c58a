import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Metadata } from '@grpc/grpc-js';
import {
  AGENT_MESSAGE_LIMITS,
  AgentServiceClient,
  agentChannelCredentials,
  createCsrForKey,
  createTlsKeyAndCsr,
  derToPem,
  type EnrollResponse,
  unary,
} from '@sigil/agent-protocol';
import { generateAgentKeyPair } from '@sigil/envelope';
import type { AgentIdentity } from './identity-store.js';

export type Credential = { kind: 'bootstrap-token'; file: string } | { kind: 'service-account-token'; file: string };

/** Enrolls: keys made here, only the CSR and public key sent; the token is read from its file just now. */
export async function enroll(
  address: string,
  caPem: string,
  cluster: string,
  credential: Credential,
  version: string,
): Promise<AgentIdentity> {
  const tls = createTlsKeyAndCsr(cluster);
  const delivery = generateAgentKeyPair();
  const token = (await readFile(credential.file, 'utf8')).trim();
  const client = new AgentServiceClient(address, agentChannelCredentials(caPem), AGENT_MESSAGE_LIMITS);
  try {
    const res = await unary<EnrollResponse>((cb) =>
      client.enroll(
        {
          cluster,
          credential:
            credential.kind === 'bootstrap-token'
              ? { $case: 'bootstrapToken', value: token }
              : { $case: 'serviceAccountToken', value: token },
          csrDer: tls.csrDer,
          deliveryPublicKeyDer: delivery.publicKeyDer,
          agentVersion: version,
        },
        new Metadata(),
        { deadline: Date.now() + 30_000 },
        cb,
      ),
    );
    return {
      cluster,
      clusterId: res.clusterId,
      tlsKeyPem: tls.keyPem,
      certificatePem: derToPem(res.certificateDer, 'CERTIFICATE'),
      deliveryPrivateKeyPem: delivery.privateKeyPem,
    };
  } finally {
    client.close();
  }
}

/** A fresh certificate for the same key. */
export async function renew(client: AgentServiceClient, identity: AgentIdentity): Promise<AgentIdentity> {
  const csrDer = createCsrForKey(identity.cluster, identity.tlsKeyPem);
  const res = await unary<{ certificateDer: Buffer }>((cb) =>
    client.renewCertificate({ csrDer }, new Metadata(), { deadline: Date.now() + 30_000 }, cb),
  );
  return { ...identity, certificatePem: derToPem(res.certificateDer, 'CERTIFICATE') };
}

/** When to renew: at two thirds of the certificate's lifetime. */
export function renewalDue(certificatePem: string): Date {
  const c = new X509Certificate(certificatePem);
  const from = new Date(c.validFrom).getTime();
  const to = new Date(c.validTo).getTime();
  return new Date(from + ((to - from) * 2) / 3);
}

export const certificateExpired = (certificatePem: string) => new Date(new X509Certificate(certificatePem).validTo).getTime() <= Date.now();
