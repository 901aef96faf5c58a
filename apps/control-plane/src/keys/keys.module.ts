import { Module } from '@nestjs/common';
import { HsmModule } from '../hsm/hsm.module.js';
import { ClusterKeyRepository } from './cluster-key.repository.js';
import { ClusterKeyService } from './cluster-keys.service.js';
import { EnvelopeService } from './envelopes.service.js';
import { RootKeyRepository } from './root-key.repository.js';
import { RootKeyRotationRepository } from './root-key-rotation.repository.js';
import { RootKeyRotationService } from './root-key-rotation.service.js';
import { RootKeysController } from './root-keys.controller.js';
import { RootKeyService } from './root-keys.service.js';
import { SealedValueRepository } from './sealed-value.repository.js';
import { SealedValueService } from './sealed-values.service.js';

/** Key custody: root keys, sealed values, cluster delivery keys, envelopes, rotation; the admin API of root keys. */
@Module({
  imports: [HsmModule],
  controllers: [RootKeysController],
  providers: [
    RootKeyRepository,
    SealedValueRepository,
    ClusterKeyRepository,
    RootKeyRotationRepository,
    RootKeyService,
    SealedValueService,
    ClusterKeyService,
    EnvelopeService,
    RootKeyRotationService,
  ],
  exports: [
    RootKeyService,
    SealedValueService,
    ClusterKeyService,
    EnvelopeService,
    RootKeyRotationService,
    RootKeyRepository,
    ClusterKeyRepository,
  ],
})
export class KeysModule {}
