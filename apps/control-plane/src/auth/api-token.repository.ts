import { Inject, Injectable } from '@nestjs/common';
import { DataSource, IsNull, type Repository } from 'typeorm';
import { ApiTokenEntity, type ApiTokenRole } from './api-token.entity.js';

@Injectable()
export class ApiTokenRepository {
  private readonly repo: Repository<ApiTokenEntity>;

  constructor(@Inject(DataSource) ds: DataSource) {
    this.repo = ds.getRepository(ApiTokenEntity);
  }

  findActiveByHash(tokenHash: Buffer): Promise<ApiTokenEntity | null> {
    return this.repo.findOneBy({ tokenHash, revokedAt: IsNull() });
  }

  async insert(t: { name: string; role: ApiTokenRole; projectId: string | null; tokenHash: Buffer }): Promise<ApiTokenEntity> {
    return this.repo.save(this.repo.create({ ...t, revokedAt: null }));
  }

  list(): Promise<ApiTokenEntity[]> {
    return this.repo.find({ order: { createdAt: 'ASC' } });
  }

  async revoke(id: string): Promise<boolean> {
    const r = await this.repo.update({ id, revokedAt: IsNull() }, { revokedAt: new Date() });
    return (r.affected ?? 0) > 0;
  }
}
