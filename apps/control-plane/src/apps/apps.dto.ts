import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, Matches, MaxLength } from 'class-validator';
import { IsAbsentOr, IsDns1123Label, rule } from '../common/validators.js';
import { SECRET_TYPES } from '../common/secret-types.js';
import { DELIVERY_MODES, type AppConsumer, type AppEntity, type DeliveryMode } from './app.entity.js';
import { consumersProblem, MAX_APP_CONSUMERS } from './consumers.js';

const MODE_DOC =
  'env: envFrom; volume: an in-memory (tmpfs) Secret volume; inject: no Kubernetes Secret, the agent hands the values to annotated pods of the consumers';
const IsConsumers = () => rule('isConsumers', consumersProblem);

export class ConsumerDto {
  @ApiProperty({ example: 'shop', description: 'namespace of the pods (DNS-1123 label)' })
  namespace!: string;

  @ApiProperty({ example: 'checkout', description: 'service account of the pods (DNS-1123 subdomain), or * for any of the namespace' })
  serviceAccount!: string;
}

const MOUNT_PATH = /^\/[A-Za-z0-9._\-/]{0,255}$/;

export class CreateAppDto {
  @ApiProperty({ example: 'checkout', description: 'DNS-1123 label, unique within the project' })
  @IsDns1123Label()
  name!: string;

  @ApiProperty({ example: 'shop', description: 'Kubernetes namespace the Secrets are written to' })
  @IsDns1123Label()
  namespace!: string;

  @ApiProperty({ enum: DELIVERY_MODES, example: 'env', description: MODE_DOC })
  @IsIn(DELIVERY_MODES)
  deliveryMode!: DeliveryMode;

  @ApiPropertyOptional({
    type: [ConsumerDto],
    maxItems: MAX_APP_CONSUMERS,
    default: [],
    description:
      'inject mode (required there, at least one): the pods that may receive the values; kept but unused in env and volume modes',
  })
  @IsAbsentOr()
  @IsConsumers()
  consumers?: AppConsumer[];

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

  @ApiPropertyOptional({ enum: DELIVERY_MODES, description: MODE_DOC })
  @IsAbsentOr()
  @IsIn(DELIVERY_MODES)
  deliveryMode?: DeliveryMode;

  @ApiPropertyOptional({
    type: [ConsumerDto],
    maxItems: MAX_APP_CONSUMERS,
    description: 'replaces the list; inject mode needs at least one',
  })
  @IsAbsentOr()
  @IsConsumers()
  consumers?: AppConsumer[];

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
  @ApiProperty({ enum: DELIVERY_MODES }) deliveryMode!: DeliveryMode;
  @ApiProperty({ type: [ConsumerDto] }) consumers!: AppConsumer[];
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
      consumers: a.consumers,
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
