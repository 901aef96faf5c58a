import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { RuntimeConfig } from '../config/runtime-config.js';
import { HsmService } from '../hsm/hsm.service.js';
import { GENESIS, headMessage, headPrefix, legacyHash, recordMessage, recordMessageParts } from './audit-chain.js';
import { AuditRepository, type AuditHead, type AuditRecord, type StoredAuditRecord } from './audit.repository.js';

/** Why a verification failed; `brokenAt` names the first bad record where there is one. */
export type ChainProblem =
  | 'link_mismatch' // a record's prev_hash is not the previous record's hash: removed, inserted or reordered
  | 'mac_mismatch' // an HMAC record's content or MAC was changed (or the chain recomputed without the HSM)
  | 'legacy_hash_mismatch' // a pre-cut-over record does not match its SHA-256
  | 'scheme_downgrade' // a legacy (unkeyed) record after an HMAC record
  | 'head_mismatch' // count or last hash differ from the anchor: newest records removed (or anchor edited)
  | 'head_mac_invalid'; // the anchor is not the HSM's: edited, or never anchored

export interface ExportedHead {
  count: string;
  lastSeq: string;
  lastHash: string;
  at: string;
  /** hex HMAC-SHA256 under the audit key; null when the stored head is not anchored */
  mac: string | null;
}

export interface ChainVerification {
  ok: boolean;
  checked: number;
  /** Records verified under the legacy unkeyed scheme (before the HMAC cut-over). */
  legacy: number;
  brokenAt?: string;
  code?: ChainProblem;
  reason?: string;
  /** The anchor the log was checked against: keep it outside the database to detect a rollback later. */
  head: ExportedHead;
}

const BATCH = 1000;
/** Records per append transaction: one HSM call MACs them all, under the head lock. */
const APPEND_BATCH = 200;
const REASONS: Record<ChainProblem, string> = {
  link_mismatch: 'link to the previous record does not match (a record was removed, inserted or altered)',
  mac_mismatch: 'record content does not match its HSM MAC',
  legacy_hash_mismatch: 'record content does not match its hash',
  scheme_downgrade: 'an unkeyed legacy record follows a keyed one',
  head_mismatch: 'the log does not end where its anchor says (newest records were removed, or the anchor was changed)',
  head_mac_invalid: 'the anchor (record count and last hash) is not MACed by the HSM',
};

export function exportHead(head: AuditHead): ExportedHead {
  return {
    count: head.count,
    lastSeq: head.lastSeq,
    lastHash: head.lastHash.toString('hex'),
    at: new Date(head.at).toISOString(),
    mac: head.mac?.toString('hex') ?? null,
  };
}

/**
 * A tamper-evident log: each record's MAC (HMAC-SHA256 under a key that never leaves the HSM)
 * covers its sequence number, its content and the previous record's MAC; a MACed head (count
 * and last MAC) anchors the end. Editing a record, recomputing the chain, or removing records
 * at the end are all detected. Records never contain values.
 */
@Injectable()
export class AuditService implements OnApplicationBootstrap, OnApplicationShutdown {
  private headTimer: NodeJS.Timeout | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending: Array<{ record: AuditRecord; resolve: () => void; reject: (err: unknown) => void }> = [];
  private flushing: Promise<void> | undefined;

  constructor(
    @Inject(AuditRepository) private readonly repo: AuditRepository,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(PinoLogger) private readonly logger: PinoLogger,
  ) {
    logger.setContext('audit');
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.prepared();
    await this.logHead();
    this.headTimer = setInterval(() => void this.logHead(), this.config.audit.headLogIntervalMinutes * 60_000);
    this.headTimer.unref();
  }

  /**
   * The audit key exists and a never-anchored (just migrated) head is anchored, before the first
   * append: an append to an unanchored head would leave the anchor invalid for good.
   */
  private prepared(): Promise<void> {
    this.ready ??= (async () => {
      // Under the head lock, so replicas starting together create one key and anchor once.
      const anchored = await this.repo.anchorLegacy(async (head) => {
        await this.hsm.ensureAuditKey();
        const [mac] = await this.hsm.auditMac([headMessage(head)]);
        return mac!;
      });
      await this.hsm.ensureAuditKey(); // also when there was nothing to anchor
      if (anchored) this.logger.info('audit log anchored in the HSM (HMAC cut-over)');
    })().catch((err: unknown) => {
      this.ready = undefined; // the next call retries
      throw err;
    });
    return this.ready;
  }

  onApplicationShutdown(): void {
    clearInterval(this.headTimer);
  }

  /** The scheduled export of the anchor: a log line per interval, for comparison with the database later. */
  private async logHead(): Promise<void> {
    try {
      this.logger.info({ auditHead: exportHead(await this.repo.head()) }, 'audit head');
    } catch (err) {
      this.logger.error({ err }, 'could not read the audit head');
    }
  }

  async record(r: Omit<AuditRecord, 'projectId'> & { projectName?: string }): Promise<void> {
    const projectId = r.projectName ? await this.repo.projectIdByName(r.projectName) : null;
    const { projectName: _unused, ...rest } = r;
    const record: AuditRecord = { ...rest, projectId };
    await this.prepared();
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ record, resolve, reject });
      this.flushing ??= this.flush().finally(() => (this.flushing = undefined));
    });
  }

  /**
   * Group commit: appends wait here (in memory, bounded by the requests in flight) and are
   * written together, one transaction, one pooled connection and one HSM call per batch, instead of each
   * holding a connection while it queues for the head lock. Each caller still returns only once
   * its own record is committed, and sees the batch's error if it failed.
   */
  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, APPEND_BATCH);
      try {
        await this.repo.append(
          batch.map((p) => p.record),
          (records, seqs, head, at) =>
            this.hsm.auditAppendBatch({
              records: records.map((record, i) => recordMessageParts(seqs[i]!, record)),
              prevHash: head.lastHash,
              headPrefix: headPrefix((BigInt(head.count) + BigInt(records.length)).toString(), seqs.at(-1)!, at),
              previousHead: head.mac ? { message: headMessage(head), mac: head.mac } : null,
            }),
        );
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
  }

  list(filter: Parameters<AuditRepository['list']>[0], limit: number): Promise<StoredAuditRecord[]> {
    return this.repo.list(filter, limit);
  }

  /**
   * Walks the log up to the head read first (later appends are left for the next run): links
   * and legacy hashes here, HMACs in the HSM one batch per round trip, then the anchor.
   */
  async verify(): Promise<ChainVerification> {
    const head = await this.repo.head();
    const result = (checked: number, legacy: number, problem?: { code: ChainProblem; seq?: string }): ChainVerification => ({
      ok: problem === undefined,
      checked,
      legacy,
      ...(problem ? { code: problem.code, reason: REASONS[problem.code], ...(problem.seq ? { brokenAt: problem.seq } : {}) } : {}),
      head: exportHead(head),
    });
    let prev: Buffer = GENESIS;
    let after = '0';
    let checked = 0;
    let legacy = 0;
    let keyed = false;
    for (;;) {
      const rows = await this.repo.batch(after, head.lastSeq, BATCH);
      // Links and legacy hashes: the first break in this batch, if any.
      let broken: { index: number; code: ChainProblem } | undefined;
      const macs: Array<{ index: number; message: Buffer; mac: Buffer }> = [];
      rows.forEach((row, index) => {
        if (broken) return;
        const record = { ...row, at: new Date(row.at) };
        if (!row.prevHash.equals(prev)) broken = { index, code: 'link_mismatch' };
        else if (row.scheme === 1 && keyed) broken = { index, code: 'scheme_downgrade' };
        else if (row.scheme === 1 && !legacyHash(prev, record).equals(row.hash)) broken = { index, code: 'legacy_hash_mismatch' };
        else if (row.scheme === 2) macs.push({ index, message: recordMessage(row.seq, prev, record), mac: row.hash });
        keyed ||= row.scheme === 2;
        prev = row.hash;
      });
      const valid = await this.hsm.auditVerify(macs.map(({ message, mac }) => ({ message, mac })));
      const badMac = macs.find((_, i) => !valid[i]);
      if (badMac && (!broken || badMac.index < broken.index)) broken = { index: badMac.index, code: 'mac_mismatch' };
      if (broken) {
        const before = rows.slice(0, broken.index);
        return result(checked + before.length, legacy + before.filter((r) => r.scheme === 1).length, {
          code: broken.code,
          seq: rows[broken.index]!.seq,
        });
      }
      checked += rows.length;
      legacy += rows.filter((r) => r.scheme === 1).length;
      if (rows.length < BATCH) break;
      after = rows[rows.length - 1]!.seq;
    }
    if (String(checked) !== head.count || !prev.equals(head.lastHash)) return result(checked, legacy, { code: 'head_mismatch' });
    const [anchorOk] = head.mac ? await this.hsm.auditVerify([{ message: headMessage(head), mac: head.mac }]) : [false];
    if (!anchorOk) return result(checked, legacy, { code: 'head_mac_invalid' });
    return result(checked, legacy);
  }
}
