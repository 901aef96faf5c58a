import { describe, expect, it } from '@jest/globals';
import type { PinoLogger } from 'nestjs-pino';
import type { RuntimeConfig } from '../config/runtime-config.js';
import { RotationSweep } from './rotation-sweep.js';
import type { DueRotation, SecretsRepository } from './secrets.repository.js';
import type { SecretsService } from './secrets.service.js';

/** Due rows in order of due time, as PostgreSQL answers; postponing a row takes it out of the due set. */
function world(n: number, failing: (d: DueRotation) => boolean, heldElsewhere: (d: DueRotation) => boolean = () => false) {
  const due: DueRotation[] = Array.from({ length: n }, (_, i) => ({ id: `s${i}`, appId: 'a', project: 'p', app: 'app', name: `s${i}` }));
  const rotated: string[] = [];
  const postponed: Array<[string, number]> = [];
  const repo = {
    dueRotations: (limit: number) => Promise.resolve(due.slice(0, limit)),
    postponeRotation: (id: string, seconds: number) => {
      postponed.push([id, seconds]);
      due.splice(
        due.findIndex((d) => d.id === id),
        1,
      );
      return Promise.resolve();
    },
  };
  const secrets = {
    rotateDue: (d: DueRotation) => {
      if (failing(d)) return Promise.reject(new Error('CKR_DEVICE_ERROR'));
      if (heldElsewhere(d)) return Promise.resolve(false); // SKIP LOCKED: still due, another replica's
      rotated.push(d.id);
      due.splice(due.indexOf(d), 1);
      return Promise.resolve(true);
    },
  };
  const logger = { setContext: () => undefined, info: () => undefined, warn: () => undefined };
  const config = { roles: ['worker'], rotation: { sweepIntervalMs: 60_000, daySeconds: 86_400 } };
  const sweep = new RotationSweep(
    repo as unknown as SecretsRepository,
    secrets as unknown as SecretsService,
    config as unknown as RuntimeConfig,
    logger as unknown as PinoLogger,
  );
  return { sweep, rotated, postponed };
}

describe('RotationSweep', () => {
  it('rotates everything due, batch after batch', async () => {
    const { sweep, rotated } = world(120, () => false);
    expect(await sweep.sweep()).toBe(120);
    expect(rotated).toHaveLength(120);
  });

  it('postpones a failing secret by five intervals, so 60 that always fail do not hold back the 40 due after them', async () => {
    const { sweep, rotated, postponed } = world(100, (d) => Number(d.id.slice(1)) < 60);
    expect(await sweep.sweep()).toBe(40);
    expect(rotated).toEqual(Array.from({ length: 40 }, (_, i) => `s${i + 60}`));
    expect(postponed).toHaveLength(60);
    expect(postponed.every(([, s]) => s === 300)).toBe(true);
  });

  it('ends when what is left is held by another replica (still due, skipped), rotating the rest', async () => {
    const { sweep, rotated, postponed } = world(
      80,
      () => false,
      (d) => Number(d.id.slice(1)) % 2 === 0,
    );
    expect(await sweep.sweep()).toBe(40);
    expect(rotated).toHaveLength(40);
    expect(postponed).toEqual([]);
  });
});
