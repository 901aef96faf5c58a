import { ApiProperty } from '@nestjs/swagger';
import type { RotationRow } from './root-key-rotation.repository.js';
import type { RootKeyView } from './root-keys.service.js';

export class RootKeyHsmAttributesView {
  @ApiProperty({ example: true }) sensitive!: boolean;
  @ApiProperty({ example: false }) extractable!: boolean;
  @ApiProperty({ example: true }) neverExtractable!: boolean;
  @ApiProperty({ example: true }) alwaysSensitive!: boolean;
}

export class RootKeyInfoView {
  @ApiProperty({ example: 2 }) version!: number;
  @ApiProperty({ enum: ['active', 'retired', 'destroyed'] }) state!: 'active' | 'retired' | 'destroyed';
  @ApiProperty() createdAt!: Date;
  @ApiProperty({ nullable: true, type: Date }) retiredAt!: Date | null;
  @ApiProperty({ nullable: true, type: Date }) destroyedAt!: Date | null;
  @ApiProperty({ example: 0, description: 'data keys and cluster delivery keys still wrapped under this version' })
  references!: number;
  @ApiProperty({
    type: RootKeyHsmAttributesView,
    required: false,
    description: 'the key object’s attributes as the HSM reports them; absent once destroyed',
  })
  hsm?: RootKeyHsmAttributesView;

  static of(k: RootKeyView): RootKeyInfoView {
    return {
      version: k.version,
      state: k.state,
      createdAt: k.createdAt,
      retiredAt: k.retiredAt,
      destroyedAt: k.destroyedAt,
      references: k.references,
      ...(k.hsm ? { hsm: k.hsm } : {}),
    };
  }
}

export class RootKeyList {
  @ApiProperty({ type: [RootKeyInfoView] }) items!: RootKeyInfoView[];
}

export class RootKeyRotationView {
  @ApiProperty({ example: '0b7e2b9c-3c1e-4f7a-9d55-5b1f0f3e8a21' }) id!: string;
  @ApiProperty({ example: 1 }) fromVersion!: number;
  @ApiProperty({ example: 2 }) toVersion!: number;
  @ApiProperty({ enum: ['running', 'completed', 'failed'] }) state!: 'running' | 'completed' | 'failed';
  @ApiProperty({ example: 1200, description: 'stored keys to re-wrap when the rotation started' }) total!: number;
  @ApiProperty({ example: 500, description: 'stored keys re-wrapped so far' }) done!: number;
  @ApiProperty() startedAt!: Date;
  @ApiProperty({ nullable: true, type: Date }) finishedAt!: Date | null;

  static of(r: RotationRow): RootKeyRotationView {
    return {
      id: r.id,
      fromVersion: r.fromVersion,
      toVersion: r.toVersion,
      state: r.state,
      total: r.total,
      done: r.done,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
    };
  }
}
