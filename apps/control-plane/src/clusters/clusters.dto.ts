import { ApiProperty, ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { IsInt, Max, Min } from 'class-validator';
import { IsAbsentOr, IsDns1123Label, IsLabelMap, rule } from '../common/validators.js';
import { kubernetesIdentityProblem, type KubernetesIdentity } from './kubernetes-identity.js';
import type { ClusterEntity, ClusterState, EnrollmentTokenEntity } from './cluster.entity.js';

const IsKubernetesIdentity = () => rule('isKubernetesIdentity', kubernetesIdentityProblem);

const KUBERNETES_IDENTITY_EXAMPLE: KubernetesIdentity = {
  issuer: 'https://kubernetes.default.svc.cluster.local',
  jwksUri: 'https://api.eu-west-store-0042.example.com:6443/openid/v1/jwks',
  serviceAccount: { namespace: 'sigil-agent', name: 'sigil-agent' },
};

const KUBERNETES_IDENTITY_SCHEMA: ApiPropertyOptions = {
  type: 'object',
  required: ['issuer', 'serviceAccount'],
  properties: {
    issuer: { type: 'string', description: 'the `iss` of the cluster’s service-account tokens (--service-account-issuer)' },
    jwksUri: { type: 'string', description: 'https URL of the issuer’s JWKS (e.g. <apiserver>/openid/v1/jwks)' },
    jwks: { type: 'object', additionalProperties: true, description: 'the JWKS itself, when the control plane cannot reach the issuer' },
    caCert: { type: 'string', description: 'PEM bundle to verify jwksUri / discovery with, instead of the system roots' },
    serviceAccount: {
      type: 'object',
      required: ['namespace', 'name'],
      properties: { namespace: { type: 'string' }, name: { type: 'string' } },
    },
    allowPrivateAddresses: {
      type: 'boolean',
      default: false,
      description:
        'let discovery / JWKS fetches reach loopback, private and link-local addresses (checked on every resolved address); off by default',
    },
  },
  description: 'Enrollment by the cluster’s own service-account identity; without jwks or jwksUri, OIDC discovery on the issuer',
};

export class KubernetesIdentityDto {
  @ApiProperty({ ...KUBERNETES_IDENTITY_SCHEMA, example: KUBERNETES_IDENTITY_EXAMPLE })
  @IsKubernetesIdentity()
  kubernetesIdentity!: KubernetesIdentity;
}

export class RegisterClusterDto {
  @ApiProperty({ example: 'eu-west-store-0042', description: 'DNS-1123 label, unique' })
  @IsDns1123Label()
  name!: string;

  @ApiPropertyOptional({ example: { region: 'eu-west', tier: 'store' }, type: 'object', additionalProperties: { type: 'string' } })
  @IsAbsentOr()
  @IsLabelMap()
  labels?: Record<string, string>;

  @ApiPropertyOptional({ ...KUBERNETES_IDENTITY_SCHEMA, example: KUBERNETES_IDENTITY_EXAMPLE })
  @IsAbsentOr()
  @IsKubernetesIdentity()
  kubernetesIdentity?: KubernetesIdentity;
}

export class RelabelClusterDto {
  @ApiProperty({
    example: { region: 'eu-west', tier: 'store', canary: 'true' },
    description: 'replaces all labels',
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  @IsLabelMap()
  labels!: Record<string, string>;
}

export class CreateEnrollmentTokenDto {
  @ApiPropertyOptional({ example: 3600, default: 3600, description: 'lifetime in seconds (60 s to 24 h)' })
  @IsAbsentOr()
  @IsInt()
  @Min(60)
  @Max(24 * 3600)
  ttlSeconds?: number;
}

export class ClusterView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'eu-west-store-0042' }) name!: string;
  @ApiProperty({ example: { region: 'eu-west' } }) labels!: Record<string, string>;
  @ApiProperty({ enum: ['registered', 'enrolled', 'disabled'] }) state!: ClusterState;
  @ApiProperty({ nullable: true, ...KUBERNETES_IDENTITY_SCHEMA }) kubernetesIdentity!: KubernetesIdentity | null;
  @ApiProperty({ example: '7', description: 'what the cluster should hold, as a generation (a decimal string)' })
  desiredGeneration!: string;
  @ApiProperty({ example: '7', description: 'the generation its agent last reported as applied' }) appliedGeneration!: string;
  @ApiProperty({ nullable: true, type: String, example: '0.1.0' }) agentVersion!: string | null;
  @ApiProperty({ nullable: true, type: Date }) lastSeenAt!: Date | null;
  @ApiProperty({
    nullable: true,
    type: Boolean,
    description:
      'whether its agent holds a stream to a control-plane replica now (seen within the last 45 s); null when that is unknown (Redis unreachable)',
  })
  agentConnected!: boolean | null;
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;

  static of(c: ClusterEntity, agentConnected: boolean | null): ClusterView {
    return {
      id: c.id,
      name: c.name,
      labels: c.labels,
      state: c.state,
      kubernetesIdentity: c.kubernetesIdentity,
      desiredGeneration: c.desiredGeneration.toString(),
      appliedGeneration: c.appliedGeneration.toString(),
      agentVersion: c.agentVersion,
      lastSeenAt: c.lastSeenAt,
      agentConnected,
      version: c.version,
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
    };
  }
}

export class ClusterPage {
  @ApiProperty({ type: [ClusterView] }) items!: ClusterView[];
  @ApiProperty({ nullable: true, type: String }) next!: string | null;
}

export class EnrollmentTokenView {
  @ApiProperty({ format: 'uuid', description: 'names the token to revoke it' }) id!: string;
  @ApiProperty({ example: 'sge_2vJ0mYpQ…', description: 'shown once; only its hash is stored' }) token!: string;
  @ApiProperty() expiresAt!: Date;
  @ApiProperty({ example: 'eu-west-store-0042' }) cluster!: string;
}

/** What is known about an enrollment token after it was shown: never the token or its hash. */
export class EnrollmentTokenInfoView {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() createdAt!: Date;
  @ApiProperty({ example: 'ops-admin', description: 'the API token that created it' }) createdBy!: string;
  @ApiProperty() expiresAt!: Date;
  @ApiProperty({ nullable: true, type: Date, description: 'when an agent enrolled with it' }) usedAt!: Date | null;
  @ApiProperty({ enum: ['unused', 'used', 'expired'] }) state!: 'unused' | 'used' | 'expired';

  static of(t: EnrollmentTokenEntity, now = Date.now()): EnrollmentTokenInfoView {
    return {
      id: t.id,
      createdAt: t.createdAt,
      createdBy: t.createdBy,
      expiresAt: t.expiresAt,
      usedAt: t.usedAt,
      state: t.usedAt ? 'used' : t.expiresAt.getTime() <= now ? 'expired' : 'unused',
    };
  }
}

export class EnrollmentTokenList {
  @ApiProperty({ type: [EnrollmentTokenInfoView], description: 'newest first, at most 100' }) items!: EnrollmentTokenInfoView[];
}
