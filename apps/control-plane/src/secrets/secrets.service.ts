import { Inject, Injectable } from '@nestjs/common';
import { MAX_SECRET_DATA_BYTES, MAX_SECRET_PAYLOAD_BYTES } from '@sigil/agent-protocol';
import { encodeSecretPayload, encodedSecretPayloadLength } from '@sigil/envelope';
import type { AppEntity } from '../apps/app.entity.js';
import { MembershipService } from '../delivery/membership.service.js';
import { AppsService } from '../apps/apps.service.js';
import type { Actor } from '../auth/policy.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { dns1123SubdomainProblem as secretNameProblem, secretKeyProblem } from '../common/kubernetes-names.js';
import { SecretsError, SecretsErrorCode } from './secrets.errors.js';
import { isUniqueViolation, violatedConstraint } from '../database/constraint-violation.js';
import type { Tx } from '../database/transaction.js';
import { HsmService } from '../hsm/hsm.service.js';
import { SealedValueService } from '../keys/sealed-values.service.js';
import type { ProjectEntity } from '../projects/project.entity.js';
import { typeProblems } from '../common/secret-types.js';
import type { SecretEntity, SecretVersionEntity } from './secret.entity.js';
import type { CreateSecretDto, SecretValuesDto } from './secrets.dto.js';
import { SecretsRepository } from './secrets.repository.js';

/** Kubernetes stores at most 1 MiB per Secret; keys and values count. */
export const MAX_SECRET_BYTES = MAX_SECRET_DATA_BYTES;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface SecretWithVersion {
  project: ProjectEntity;
  app: AppEntity;
  secret: SecretEntity;
  current: SecretVersionEntity;
}

/**
 * Secrets are write-only: values are validated, sealed by the HSM (with per-key HMAC
 * fingerprints) and stored as ciphertext in one transaction; nothing returns them.
 */
@Injectable()
export class SecretsService {
  constructor(
    @Inject(AppsService) private readonly apps: AppsService,
    @Inject(SecretsRepository) private readonly repo: SecretsRepository,
    @Inject(SealedValueService) private readonly sealer: SealedValueService,
    @Inject(HsmService) private readonly hsm: HsmService,
    @Inject(MembershipService) private readonly membership: MembershipService,
  ) {}

  async get(actor: Actor, project: string, app: string, name: string): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    const secret = await this.findSecret(r.app.id, name);
    if (!secret) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
    const current = await this.repo.findVersion(secret.id, secret.currentVersion);
    return { ...r, secret, current: current! };
  }

  async list(actor: Actor, project: string, app: string, after: string | undefined, limit: number) {
    const r = await this.apps.resolve(actor, project, app);
    const page: Page<SecretEntity> = toPage(await this.repo.list(r.app.id, after, limit + 1), limit, (s) => s.name);
    return { ...r, page, current: await this.repo.currentVersions(page.items) };
  }

  async versions(actor: Actor, project: string, app: string, name: string) {
    const r = await this.get(actor, project, app, name);
    return { ...r, versions: await this.repo.versions(r.secret.id) };
  }

  async names(actor: Actor, project: string, app: string) {
    const r = await this.apps.resolve(actor, project, app);
    return { ...r, names: (await this.repo.listAllNames(r.app.id)).map((s) => s.name) };
  }

  async create(actor: Actor, project: string, app: string, dto: CreateSecretDto): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    const type = dto.type ?? r.app.secretType;
    const values = parseValues(dto, type);
    try {
      return await this.membership.appContentChange(r.app.id, async (tx) => {
        const secret = await this.repo.saveSecret(tx, {
          projectId: r.project.id,
          appId: r.app.id,
          namespace: r.app.namespace,
          name: dto.name,
          type,
          currentVersion: 1,
          latestVersion: 1,
        });
        const current = await this.writeVersion(tx, actor, r, secret, 1, values);
        return { ...r, secret, current };
      });
    } catch (err) {
      const v = violatedConstraint(err)?.constraint;
      if (v === 'secrets_target_unique') {
        throw new SecretsError(
          SecretsErrorCode.SecretTargetConflict,
          `another app already delivers a Secret named ${dto.name} in namespace ${r.app.namespace}; each Kubernetes Secret has one owner`,
        );
      }
      if (v === 'secrets_app_namespace')
        throw new SecretsError(SecretsErrorCode.AppChanged, `app ${JSON.stringify(app)} changed namespace meanwhile; try again`);
      if (isUniqueViolation(err))
        throw new SecretsError(
          SecretsErrorCode.SecretExists,
          `secret ${JSON.stringify(dto.name)} already exists in app ${JSON.stringify(app)}`,
        );
      throw err;
    } finally {
      for (const v of values.values()) v.fill(0);
    }
  }

  /** A new version with these values (all keys: a version is complete, not a patch). */
  async update(
    actor: Actor,
    project: string,
    app: string,
    name: string,
    dto: SecretValuesDto,
    expectedVersion: number | undefined,
  ): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    const existing = await this.findSecret(r.app.id, name);
    if (!existing) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
    const values = parseValues(dto, existing.type);
    try {
      return await this.membership.appContentChange(r.app.id, async (tx) => {
        const secret = secretNameProblem(name) ? null : await this.repo.lockByName(tx, r.app.id, name);
        if (!secret) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
        checkVersion(expectedVersion, secret.version);
        const next = secret.latestVersion + 1;
        const current = await this.writeVersion(tx, actor, r, secret, next, values);
        secret.latestVersion = next;
        secret.currentVersion = next;
        return { ...r, secret: await this.repo.saveSecret(tx, secret), current };
      });
    } finally {
      for (const v of values.values()) v.fill(0);
    }
  }

  /** Points the secret back at an earlier version; its ciphertext is reused as is. */
  async rollback(
    actor: Actor,
    project: string,
    app: string,
    name: string,
    version: number,
    expectedVersion: number | undefined,
  ): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    return this.membership.appContentChange(r.app.id, async (tx) => {
      const secret = secretNameProblem(name) ? null : await this.repo.lockByName(tx, r.app.id, name);
      if (!secret) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
      checkVersion(expectedVersion, secret.version);
      const target = await this.repo.findVersion(secret.id, version, tx);
      if (!target)
        throw new SecretsError(SecretsErrorCode.SecretVersionNotFound, `version ${version} of secret ${JSON.stringify(name)} not found`);
      secret.currentVersion = version;
      return { ...r, secret: await this.repo.saveSecret(tx, secret), current: target };
    });
  }

  async delete(actor: Actor, project: string, app: string, name: string, expectedVersion: number | undefined): Promise<void> {
    const r = await this.apps.resolve(actor, project, app);
    await this.membership.appContentChange(r.app.id, async (tx) => {
      const secret = secretNameProblem(name) ? null : await this.repo.lockByName(tx, r.app.id, name);
      if (!secret) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
      checkVersion(expectedVersion, secret.version);
      await this.repo.delete(tx, secret.id); // versions cascade; a trigger deletes their ciphertext
    });
  }

  private async findSecret(appId: string, name: string): Promise<SecretEntity | null> {
    return secretNameProblem(name) ? null : this.repo.findByName(appId, name);
  }

  private async writeVersion(
    tx: Tx,
    actor: Actor,
    r: { project: ProjectEntity; app: AppEntity },
    secret: SecretEntity,
    version: number,
    values: Map<string, Buffer>,
  ): Promise<SecretVersionEntity> {
    const keys = [...values.keys()].sort();
    // Bound to this secret and key: equal values compare equal across versions of one key, but a
    // fingerprint cannot be matched against guesses written into another secret.
    const fingerprints = await this.hsm.fingerprint(keys.map((k) => Buffer.concat([Buffer.from(`${secret.id}\0${k}\0`), values.get(k)!])));
    const payload = encodeSecretPayload(values);
    const [sealedValueId] = await this.sealer.seal(
      [{ value: payload, context: { projectId: r.project.id, app: r.app.name, secret: secret.name, secretId: secret.id, version } }],
      tx,
    );
    return this.repo.insertVersion(tx, {
      secretId: secret.id,
      version,
      sealedValueId: sealedValueId!,
      keys,
      fingerprints: Object.fromEntries(keys.map((k, i) => [k, fingerprints[i]!])),
      sizeBytes: [...values].reduce((n, [k, v]) => n + Buffer.byteLength(k) + v.length, 0),
      createdBy: actor.name,
    });
  }
}

/** Validates keys, sizes and type rules; returns key → value bytes. Errors name keys, never values. */
export function parseValues(dto: SecretValuesDto, type: string): Map<string, Buffer> {
  const problems: Array<{ field: string; problem: string }> = [];
  const values = new Map<string, Buffer>();
  for (const [field, map, binary] of [
    ['data', dto.data ?? {}, false],
    ['binaryData', dto.binaryData ?? {}, true],
  ] as const) {
    for (const [key, value] of Object.entries(map)) {
      const keyProblem = secretKeyProblem(key);
      if (keyProblem) problems.push({ field: `${field}.${key.slice(0, 80)}`, problem: `key ${keyProblem}` });
      else if (values.has(key)) problems.push({ field: `${field}.${key}`, problem: 'key appears in both data and binaryData' });
      else if (binary && !BASE64.test(value)) problems.push({ field: `${field}.${key}`, problem: 'must be base64' });
      else values.set(key, binary ? Buffer.from(value, 'base64') : Buffer.from(value, 'utf8'));
    }
  }
  if (problems.length === 0 && values.size === 0) problems.push({ field: 'data', problem: 'a secret needs at least one key' });
  if (problems.length > 0)
    throw new SecretsError(SecretsErrorCode.InvalidSecret, problems.map((p) => `${p.field}: ${p.problem}`).join('; '), {
      details: problems,
    });
  const size = [...values].reduce((n, [k, v]) => n + Buffer.byteLength(k) + v.length, 0);
  if (size > MAX_SECRET_BYTES)
    throw new SecretsError(
      SecretsErrorCode.SecretTooLarge,
      `a Kubernetes Secret holds at most ${MAX_SECRET_BYTES} bytes; this one has ${size}`,
    );
  // What is sealed and delivered must fit one GetDesiredState page (libs/agent-protocol limits).
  const encoded = encodedSecretPayloadLength(values);
  if (encoded > MAX_SECRET_PAYLOAD_BYTES)
    throw new SecretsError(
      SecretsErrorCode.SecretTooLarge,
      `a secret's encoded payload may be at most ${MAX_SECRET_PAYLOAD_BYTES} bytes; this one encodes to ${encoded} (fewer, longer keys encode smaller)`,
    );
  const typeIssues = typeProblems(type, values);
  if (typeIssues.length > 0)
    throw new SecretsError(SecretsErrorCode.InvalidSecretType, typeIssues.map((p) => `${p.field}: ${p.problem}`).join('; '), {
      details: typeIssues,
    });
  return values;
}
