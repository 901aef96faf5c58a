import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, Max, Min } from 'class-validator';
import { IsAbsentOr, IsDns1123Subdomain, IsStringMap, rule } from '../common/validators.js';
import { SECRET_TYPES } from '../common/secret-types.js';
import { DEFAULT_MIN_TTL_SECONDS, dynamicSpecProblem, MAX_STATEMENTS, MAX_TTL_SECONDS } from './dynamic-spec.js';
import {
  DEFAULT_ALPHABET,
  GENERATED_KINDS,
  generateSpecProblem,
  LENGTH_BOUNDS,
  MAX_GENERATED_KEYS,
  MAX_ROTATE_EVERY_DAYS,
  MIN_ENTROPY_BITS,
  type GeneratedKeySpec,
  type GeneratedKind,
} from './generator.js';

const IsGenerateSpec = () => rule('isGenerateSpec', generateSpecProblem);
const IsDynamicSpec = () => rule('isDynamicSpec', dynamicSpecProblem);

export class DynamicSpecDto {
  @ApiProperty({ example: 'orders-db', description: 'a database connection of the project (POST /v1/projects/{p}/connections)' })
  connection!: string;

  @ApiProperty({
    type: [String],
    example: [
      'CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}',
      'GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}}',
    ],
    description:
      'run in one transaction to create each credential: {{name}} (quoted role name), {{password}} (a SCRAM-SHA-256 verifier literal: the plaintext never reaches the database), {{expiration}} (timestamptz literal)',
    maxItems: MAX_STATEMENTS,
  })
  creationStatements!: string[];

  @ApiPropertyOptional({
    type: [String],
    example: ['DROP ROLE IF EXISTS {{name}}'],
    description: "templates with {{name}}; absent or empty: end the role's sessions and DROP ROLE IF EXISTS",
    maxItems: MAX_STATEMENTS,
  })
  revocationStatements?: string[];

  @ApiProperty({
    example: 86_400,
    maximum: MAX_TTL_SECONDS,
    description: `each credential's lifetime (at least ${DEFAULT_MIN_TTL_SECONDS}s)`,
  })
  ttlSeconds!: number;

  @ApiProperty({ example: 21_600, description: 'a new credential is issued this long before the current one expires (< ttlSeconds)' })
  renewBeforeSeconds!: number;

  @ApiProperty({
    example: 600,
    description:
      'how long the previous credential keeps working once the cluster applied its successor (< ttlSeconds - renewBeforeSeconds)',
  })
  graceSeconds!: number;

  @ApiProperty({
    example: {
      username: '{{username}}',
      password: '{{password}}',
      DATABASE_URL: 'postgresql://{{username}}:{{password}}@{{host}}:{{port}}/{{database}}?sslmode={{sslmode}}',
    },
    description:
      'Secret key → template of its value: {{username}}, {{password}}, {{host}}, {{port}}, {{database}}, {{sslmode}} (from the connection); values are percent-encoded in a template with ://',
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  keys!: Record<string, string>;
}

export class GeneratedKeyDto implements GeneratedKeySpec {
  @ApiProperty({ example: 'PASSWORD', description: 'Kubernetes Secret key' })
  key!: string;

  @ApiProperty({
    enum: GENERATED_KINDS,
    example: 'password',
    description: 'password: characters of `alphabet`; hex: random bytes as lowercase hex; bytes-base64: random bytes as base64 (padded)',
  })
  kind!: GeneratedKind;

  @ApiProperty({
    example: 32,
    minimum: LENGTH_BOUNDS.password.min,
    maximum: LENGTH_BOUNDS.password.max,
    description: `password: characters; hex and bytes-base64: random bytes (hex spells 2 characters per byte). Each value carries at least ${MIN_ENTROPY_BITS} bits of entropy.`,
  })
  length!: number;

  @ApiPropertyOptional({
    example: DEFAULT_ALPHABET,
    default: DEFAULT_ALPHABET,
    description: 'password only: 2 to 94 distinct printable ASCII characters (no space); drawn uniformly (rejection sampling)',
  })
  alphabet?: string;
}

export class GenerateSpecDto {
  @ApiProperty({ type: [GeneratedKeyDto], minItems: 1, maxItems: MAX_GENERATED_KEYS })
  keys!: GeneratedKeyDto[];

  @ApiPropertyOptional({
    example: 30,
    minimum: 1,
    maximum: MAX_ROTATE_EVERY_DAYS,
    description: 'rotate automatically every N days (a new version, delivered like any rotation); absent: only on request',
  })
  rotateEveryDays?: number;
}

export class SecretValuesDto {
  @ApiPropertyOptional({
    description: 'Values as UTF-8 strings, by key (Kubernetes Secret key syntax). Write-only: never returned.',
    writeOnly: true,
    example: { DATABASE_URL: 'postgres://app:s3cret@db:5432/app', LOG_LEVEL: 'info' },
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  @IsAbsentOr()
  @IsStringMap()
  data?: Record<string, string>;

  @ApiPropertyOptional({
    description: 'Binary values, base64-encoded, by key. Write-only.',
    writeOnly: true,
    example: { 'keystore.p12': 'MIIKPAIBAzCCCfYGCSqGSIb3DQEHAaCC' },
    type: 'object',
    additionalProperties: { type: 'string', format: 'byte' },
  })
  @IsAbsentOr()
  @IsStringMap()
  binaryData?: Record<string, string>;
}

export class CreateSecretDto extends SecretValuesDto {
  @ApiProperty({ example: 'checkout-db', description: 'DNS-1123 subdomain; the Kubernetes Secret name' })
  @IsDns1123Subdomain()
  name!: string;

  @ApiPropertyOptional({ enum: SECRET_TYPES, description: "default: the app's secretType" })
  @IsAbsentOr()
  @IsIn(SECRET_TYPES)
  type?: string;

  @ApiPropertyOptional({
    type: GenerateSpecDto,
    description:
      'Instead of data/binaryData: values generated by the HSM random generator, sealed at once and never returned; optionally rotated every N days',
    example: {
      keys: [
        { key: 'PASSWORD', kind: 'password', length: 32 },
        { key: 'API_KEY', kind: 'hex', length: 32 },
      ],
      rotateEveryDays: 30,
    },
  })
  @IsAbsentOr()
  @IsGenerateSpec()
  generate?: GenerateSpecDto;

  @ApiPropertyOptional({
    type: DynamicSpecDto,
    description:
      'Instead of data/binaryData/generate: every cluster the app is published to gets its own short-lived database credential (a lease), renewed before it expires and revoked when no longer needed',
  })
  @IsAbsentOr()
  @IsDynamicSpec()
  dynamic?: DynamicSpecDto;
}

export class RotationDto {
  @ApiProperty({
    example: 30,
    minimum: 1,
    maximum: MAX_ROTATE_EVERY_DAYS,
    description: 'a new version every N days, counted from the last rotation',
  })
  @IsInt()
  @Min(1)
  @Max(MAX_ROTATE_EVERY_DAYS)
  rotateEveryDays!: number;
}

export class UpdateSecretDto extends SecretValuesDto {}

export class RollbackDto {
  @ApiProperty({ example: 1, description: 'an existing version of this secret' })
  @IsInt()
  @Min(1)
  @Max(2_147_483_647)
  version!: number;
}

export class GeneratedKeyView {
  @ApiProperty({ example: 'PASSWORD' }) key!: string;
  @ApiProperty({ enum: GENERATED_KINDS, example: 'password' }) kind!: string;
  @ApiProperty({ example: 32 }) length!: number;
  @ApiPropertyOptional({ example: DEFAULT_ALPHABET, description: 'password only' }) alphabet?: string;
}

export class GeneratedSpecView {
  @ApiProperty({ type: [GeneratedKeyView] }) keys!: GeneratedKeyView[];
}

export class SecretView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'payments' }) project!: string;
  @ApiProperty({ example: 'checkout' }) app!: string;
  @ApiProperty({ example: 'checkout-db' }) name!: string;
  @ApiProperty({ example: 'Opaque' }) type!: string;
  @ApiProperty({ example: 2, description: 'the version delivered to clusters' }) currentVersion!: number;
  @ApiProperty({ example: 2 }) latestVersion!: number;
  @ApiProperty({ example: ['DATABASE_URL', 'LOG_LEVEL'], description: 'keys of the current version' }) keys!: string[];
  @ApiProperty({
    example: { DATABASE_URL: 'hmac-sha256:3f1c0a9d5e7b2c4486f0a1b2c3d4e5f6' },
    description: 'per key: HMAC-SHA256 under an HSM key (first 16 bytes)',
  })
  fingerprints!: Record<string, string>;
  @ApiProperty({ example: 52 }) sizeBytes!: number;
  @ApiProperty({
    type: GeneratedSpecView,
    nullable: true,
    description: 'generated secrets: how the values are made (no value); null for typed secrets',
  })
  generated!: GeneratedSpecView | null;
  @ApiProperty({
    type: DynamicSpecDto,
    nullable: true,
    description: "dynamic secrets: how each cluster's credential is made (no value); null otherwise. Their leases: GET …/leases",
  })
  dynamic!: DynamicSpecDto | null;
  @ApiProperty({ type: Number, nullable: true, example: 30, description: 'null: no automatic rotation' }) rotateEveryDays!: number | null;
  @ApiProperty({ type: Date, nullable: true, description: 'when the rotation sweep makes the next version' }) nextRotationAt!: Date | null;
  @ApiProperty({ type: Date, nullable: true, description: 'generated secrets: when the current values were generated' })
  lastRotatedAt!: Date | null;
  @ApiProperty({ example: 3, description: 'row version (ETag)' }) version!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;
}

export class SecretPage {
  @ApiProperty({ type: [SecretView] }) items!: SecretView[];
  @ApiProperty({ nullable: true, type: String }) next!: string | null;
}

export class SecretVersionView {
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty({ example: true }) current!: boolean;
  @ApiProperty({ example: ['DATABASE_URL'] }) keys!: string[];
  @ApiProperty({ example: { DATABASE_URL: 'hmac-sha256:3f1c0a9d5e7b2c4486f0a1b2c3d4e5f6' } }) fingerprints!: Record<string, string>;
  @ApiProperty({ example: 41 }) sizeBytes!: number;
  @ApiProperty({ example: 'ci-pipeline' }) createdBy!: string;
  @ApiProperty() createdAt!: Date;
}

export class PodSpecView {
  @ApiProperty({ enum: ['env', 'volume', 'inject'] }) deliveryMode!: string;
  @ApiProperty({
    description: 'merge into the pod spec (empty for inject apps)',
    example: { containers: [{ name: 'app', envFrom: [{ secretRef: { name: 'checkout-db' } }] }] },
  })
  podSpec!: Record<string, unknown>;
  @ApiPropertyOptional({
    description: "inject apps: add to the pod template's metadata.annotations",
    example: { 'sigil.dev/inject': 'checkout' },
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  annotations?: Record<string, string>;
  @ApiPropertyOptional({ description: 'inject apps: how the values reach the pod' }) note?: string;
}
