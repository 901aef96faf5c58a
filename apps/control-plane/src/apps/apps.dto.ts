import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, Matches, MaxLength } from 'class-validator';
import { IsAbsentOr, IsDns1123Label } from '../common/validators.js';
import { SECRET_TYPES } from '../common/secret-types.js';
import type { AppEntity, DeliveryMode } from './app.entity.js';

const MOUNT_PATH = /^\/[A-Za-z0-9._\-/]{0,255}$/;

export class CreateAppDto {
  @ApiProperty({ example: 'checkout', description: 'DNS-1123 label, unique within the project' })
  @IsDns1123Label()
  name!: string;

  @ApiProperty({ example: 'shop', description: 'Kubernetes namespace the Secrets are written to' })
  @IsDns1123Label()
  namespace!: string;

  @ApiProperty({ enum: ['env', 'volume'], example: 'env', description: 'env: envFrom; volume: an in-memory (tmpfs) Secret volume' })
  @IsIn(['env', 'volume'])
  deliveryMode!: DeliveryMode;

  @ApiPropertyOptional({ enum: SECRET_TYPES, default: 'Opaque' })
  @IsAbsentOr()
  @IsIn(SECRET_TYPES)
  secretType?: string;

  @ApiPropertyOptional({ example: '/etc/sigil', default: '/etc/sigil', description: 'volume mode: mount directory' })
  @IsAbsentOr()
  @Matches(MOUNT_PATH, { message: 'mountPath must be an absolute path of letters, digits and ._-/' })
  @MaxLength(256)
  mountPath?: string;
}

export class UpdateAppDto {
  @ApiPropertyOptional({ example: 'shop' })
  @IsAbsentOr()
  @IsDns1123Label()
  namespace?: string;

  @ApiPropertyOptional({ enum: ['env', 'volume'] })
  @IsAbsentOr()
  @IsIn(['env', 'volume'])
  deliveryMode?: DeliveryMode;

  @ApiPropertyOptional({ enum: SECRET_TYPES })
  @IsAbsentOr()
  @IsIn(SECRET_TYPES)
  secretType?: string;

  @ApiPropertyOptional({ example: '/etc/sigil' })
  @IsAbsentOr()
  @Matches(MOUNT_PATH, { message: 'mountPath must be an absolute path of letters, digits and ._-/' })
  @MaxLength(256)
  mountPath?: string;
}

export class AppView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'payments' }) project!: string;
  @ApiProperty({ example: 'checkout' }) name!: string;
  @ApiProperty({ example: 'shop' }) namespace!: string;
  @ApiProperty({ enum: ['env', 'volume'] }) deliveryMode!: DeliveryMode;
  @ApiProperty({ example: 'Opaque' }) secretType!: string;
  @ApiProperty({ example: '/etc/sigil' }) mountPath!: string;
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;

  static of(a: AppEntity, project: string): AppView {
    return {
      id: a.id,
      project,
      name: a.name,
      namespace: a.namespace,
      deliveryMode: a.deliveryMode,
      secretType: a.secretType,
      mountPath: a.mountPath,
      version: a.version,
      createdAt: a.createdAt,
      updatedAt: a.updatedAt,
    };
  }
}

export class AppPage {
  @ApiProperty({ type: [AppView] }) items!: AppView[];
  @ApiProperty({ nullable: true, type: String }) next!: string | null;
}
