import { Inject, Injectable } from '@nestjs/common';
import { encodeSecretEnvelope } from '@sigil/envelope';
import { HsmService } from '../hsm/hsm.service.js';
import { ClusterKeyRepository } from './cluster-key.repository.js';
import { KeyCustodyError, KeyCustodyErrorCode } from './keys.errors.js';
import { SealedValueRepository } from './sealed-value.repository.js';

/**
 * Builds per-cluster secret envelopes (SGE1): the value's ciphertext is shared by all
 * clusters; only the data key is re-wrapped per cluster, inside the HSM, under that
 * cluster's delivery key. Neither the value nor an unwrapped key leaves the HSM.
 */
@Injectable()
export class EnvelopeService {
  constructor(
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(ClusterKeyRepository) private readonly clusterKeys: ClusterKeyRepository,
    @Inject(SealedValueRepository) private readonly sealedValues: SealedValueRepository,
  ) {}

  /** For each cluster, one envelope per sealed value, in the order of `sealedValueIds`. */
  async forClusters(clusterIds: string[], sealedValueIds: string[]): Promise<Map<string, Buffer[]>> {
    const [keys, values] = await Promise.all([this.clusterKeys.activeFor(clusterIds), this.sealedValues.findByIds(sealedValueIds)]);
    const missingCluster = clusterIds.find((id) => !keys.has(id));
    if (missingCluster) throw new KeyCustodyError(KeyCustodyErrorCode.ClusterKeyMissing, `cluster ${missingCluster} has no delivery key`);
    const ordered = sealedValueIds.map((id) => {
      const v = values.get(id);
      if (!v) throw new KeyCustodyError(KeyCustodyErrorCode.SealedValueMissing, `sealed value ${id} does not exist`);
      return v;
    });
    const deks = ordered.map((v) => ({ rootKeyVersion: v.rootKeyVersion, wrapped: v.wrappedDek }));
    const wrapped = await this.hsm.wrapForClusters(
      clusterIds.map((id) => {
        const k = keys.get(id)!;
        return { clusterKey: { rootKeyVersion: k.rootKeyVersion, wrapped: k.wrappedKey }, deks };
      }),
    );
    return new Map(
      clusterIds.map((id, i) => [
        id,
        ordered.map((v, j) =>
          encodeSecretEnvelope({
            clusterKeyVersion: keys.get(id)!.version,
            wrappedDek: wrapped[i]![j]!,
            iv: v.iv,
            ciphertext: v.ciphertext,
          }),
        ),
      ]),
    );
  }
}
