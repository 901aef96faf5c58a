import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import { IsDns1123Label, IsLabelMap } from '../common/validators.js';
import type { ClusterEntity, ClusterState } from './cluster.entity.js';

export class RegisterClusterDto {
  @ApiProperty({ example: 'eu-west-store-0042', description: 'DNS-1123 label, unique' })
  @IsDns1123Label()
  name!: string;

  @ApiPropertyOptional({ example: { region: 'eu-west', tier: 'store' }, type: 'object', additionalProperties: { type: 'string' } })
  @IsOptional()
  @IsLabelMap()
  labels?: Record<string, string>;
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
  @ApiPropertyOptional({ example: 3600, default: 3600, description: 'lifetime in seconds (60 s to 7 days)' })
  @IsOptional()
  @IsInt()
  @Min(60)
  @Max(7 * 24 * 3600)
  ttlSeconds?: number;
}

export class ClusterView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'eu-west-store-0042' }) name!: string;
  @ApiProperty({ example: { region: 'eu-west' } }) labels!: Record<string, string>;
  @ApiProperty({ enum: ['registered', 'enrolled', 'disabled'] }) state!: ClusterState;
  @ApiProperty({ nullable: true, type: String, example: '0.1.0' }) agentVersion!: string | null;
  @ApiProperty({ nullable: true, type: Date }) lastSeenAt!: Date | null;
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;

  static of(c: ClusterEntity): ClusterView {
    return {
      id: c.id,
      name: c.name,
      labels: c.labels,
      state: c.state,
      agentVersion: c.agentVersion,
      lastSeenAt: c.lastSeenAt,
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
  @ApiProperty({ example: 'sge_2vJ0mYpQ…', description: 'shown once; only its hash is stored' }) token!: string;
  @ApiProperty() expiresAt!: Date;
  @ApiProperty({ example: 'eu-west-store-0042' }) cluster!: string;
}
