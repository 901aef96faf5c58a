import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, Max, Min } from 'class-validator';
import { IsAbsentOr, IsDns1123Subdomain, IsStringMap } from '../common/validators.js';
import { SECRET_TYPES } from '../common/secret-types.js';

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
}

export class UpdateSecretDto extends SecretValuesDto {}

export class RollbackDto {
  @ApiProperty({ example: 1, description: 'an existing version of this secret' })
  @IsInt()
  @Min(1)
  @Max(2_147_483_647)
  version!: number;
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
