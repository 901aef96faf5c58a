import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';

@Injectable()
export class ClusterCaRepository {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}

  async current(em: EntityManager = this.ds.manager): Promise<Buffer | undefined> {
    const rows = await em.query<Array<{ certificate_der: Buffer }>>(
      'SELECT certificate_der FROM certificate_authorities ORDER BY version DESC LIMIT 1',
    );
    return rows[0]?.certificate_der;
  }

  async insert(em: EntityManager, version: number, der: Buffer): Promise<void> {
    await em.query('INSERT INTO certificate_authorities (version, certificate_der) VALUES ($1, $2)', [version, der]);
  }
}
