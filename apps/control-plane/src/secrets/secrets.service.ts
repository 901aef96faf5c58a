import { Inject, Injectable } from '@nestjs/common';
import { MAX_SECRET_DATA_BYTES, MAX_SECRET_PAYLOAD_BYTES } from '@sigil/agent-protocol';
import { encodeSecretPayload, encodedSecretPayloadLength } from '@sigil/envelope';
import type { AppEntity } from '../apps/app.entity.js';
import { MembershipService } from '../delivery/membership.service.js';
import { AppsService } from '../apps/apps.service.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { dns1123SubdomainProblem as secretNameProblem, secretKeyProblem } from '../common/kubernetes-names.js';
import { SecretsError, SecretsErrorCode } from './secrets.errors.js';
import { isUniqueViolation, violatedConstraint } from '../database/constraint-violation.js';
import { UnitOfWork, type Tx } from '../database/transaction.js';
import { HsmService } from '../hsm/hsm.service.js';
import { SealedValueService } from '../keys/sealed-values.service.js';
import type { ProjectEntity } from '../projects/project.entity.js';
import { typeProblems } from '../common/secret-types.js';
import type { SecretEntity, SecretVersionEntity } from './secret.entity.js';
import type { CreateSecretDto, SecretValuesDto } from './secrets.dto.js';
import { SecretsRepository, type DueRotation } from './secrets.repository.js';
import { AuditService } from '../audit/audit.service.js';
import { Actor } from '../auth/policy.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { generateValues, normalizeSpec, type GeneratorSpec } from './generator.js';
import { dynamicTimesProblem, normalizeDynamicSpec, type DynamicSpec } from './dynamic-spec.js';
import { LeasesService } from '../leases/leases.service.js';

export type { DynamicSpec };

/** Kubernetes stores at most 1 MiB per Secret; keys and values count. */
export const MAX_SECRET_BYTES = MAX_SECRET_DATA_BYTES;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface SecretWithVersion {
  project: ProjectEntity;
  app: AppEntity;
  secret: SecretEntity;
  /** Undefined for a dynamic secret: it has no versions (each cluster's lease is its version). */
  current: SecretVersionEntity | undefined;
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
    @Inject(AuditService) private readonly audit: AuditService,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(LeasesService) private readonly leases: LeasesService,
  ) {}

  async get(actor: Actor, project: string, app: string, name: string): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    const secret = await this.findSecret(r.app.id, name);
    if (!secret) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
    const current = secret.dynamic ? undefined : ((await this.repo.findVersion(secret.id, secret.currentVersion)) ?? undefined);
    return { ...r, secret, current };
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
    if (dto.dynamic !== undefined) return this.createDynamic(r, dto, type);
    if (dto.generate !== undefined && (dto.data !== undefined || dto.binaryData !== undefined))
      throw new SecretsError(
        SecretsErrorCode.InvalidSecret,
        'a secret is either typed (data, binaryData) or generated (generate), not both',
        {
          details: [{ field: 'generate', problem: 'not allowed with data or binaryData' }],
        },
      );
    if (dto.generate !== undefined && STRUCTURED_TYPES.has(type))
      // Refused before any HSM work: random bytes are never a certificate or a JSON document.
      throw new SecretsError(SecretsErrorCode.InvalidSecret, `a secret of type ${type} holds structured values and cannot be generated`, {
        details: [{ field: 'type', problem: 'generated secrets are Opaque, kubernetes.io/basic-auth or kubernetes.io/ssh-auth' }],
      });
    const generator = dto.generate ? normalizeSpec(dto.generate.keys) : null;
    // Generated: the HSM's random bytes, checked like typed values (size, the type's rules).
    const values = generator ? checkValues(await this.generate(generator), type) : parseValues(dto, type);
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
          generator,
          dynamic: null,
          rotateEveryDays: null,
          nextRotationAt: null,
          lastRotatedAt: null,
        });
        const current = await this.writeVersion(tx, actor, r, secret, 1, values);
        if (generator)
          Object.assign(secret, await this.repo.markRotated(tx, secret.id, this.config.rotation.daySeconds, dto.generate?.rotateEveryDays));
        return { ...r, secret, current };
      });
    } catch (err) {
      throw createConflict(err, r.app.namespace, app, dto.name);
    } finally {
      for (const v of values.values()) v.fill(0);
    }
  }

  /**
   * A dynamic secret: only its recipe is stored (no value exists yet, and no version ever); the
   * leases sweeps issue each cluster's credential once the app is published there.
   */
  private async createDynamic(
    r: { project: ProjectEntity; app: AppEntity },
    dto: CreateSecretDto,
    type: string,
  ): Promise<SecretWithVersion> {
    const spec = normalizeDynamicSpec(dto.dynamic as DynamicSpec);
    const problems: Array<{ field: string; problem: string }> = [];
    if (dto.data !== undefined || dto.binaryData !== undefined || dto.generate !== undefined)
      problems.push({ field: 'dynamic', problem: 'not allowed with data, binaryData or generate' });
    if (!DYNAMIC_TYPES.has(type)) problems.push({ field: 'type', problem: 'dynamic secrets are Opaque or kubernetes.io/basic-auth' });
    else
      problems.push(
        ...typeProblems(type, new Map(Object.keys(spec.keys).map((k) => [k, Buffer.from('x')]))).map((p) => ({
          field: 'dynamic.keys',
          problem: p.problem,
        })),
      );
    const times = dynamicTimesProblem(spec, this.config.leases.minTtlSeconds);
    if (times) problems.push(times);
    if (problems.length > 0)
      throw new SecretsError(SecretsErrorCode.InvalidDynamicSecret, problems.map((p) => `${p.field}: ${p.problem}`).join('; '), {
        details: problems,
      });
    const unknownConnection = () =>
      new SecretsError(
        SecretsErrorCode.UnknownConnection,
        `project ${JSON.stringify(r.project.name)} has no database connection ${JSON.stringify(spec.connection)}`,
        { details: [{ field: 'dynamic.connection', problem: 'no such connection in the project' }] },
      );
    try {
      const done = await this.membership.appContentChange(r.app.id, async (tx) => {
        // Holding the connection's row: its delete either waits for this insert (and then sees
        // the secret: 409 connection_in_use) or went first (and this is unknown_connection).
        if (!(await this.leases.connectionExists(r.project.id, spec.connection, tx))) throw unknownConnection();
        const secret = await this.repo.saveSecret(tx, {
          projectId: r.project.id,
          appId: r.app.id,
          namespace: r.app.namespace,
          name: dto.name,
          type,
          currentVersion: 1,
          latestVersion: 1,
          generator: null,
          dynamic: spec,
          rotateEveryDays: null,
          nextRotationAt: null,
          lastRotatedAt: null,
        });
        return { ...r, secret, current: undefined };
      });
      this.leases.wake();
      return done;
    } catch (err) {
      throw createConflict(err, r.app.namespace, r.app.name, dto.name);
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
    if (existing.dynamic) throw isDynamic(name);
    if (existing.generator) throw isGenerated(name);
    const values = parseValues(dto, existing.type);
    try {
      return await this.membership.appContentChange(r.app.id, async (tx) => {
        const secret = await this.lockNamed(tx, r.app.id, name, expectedVersion);
        if (secret.dynamic) throw isDynamic(name);
        if (secret.generator) throw isGenerated(name);
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
      const secret = await this.lockNamed(tx, r.app.id, name, expectedVersion);
      if (secret.dynamic) throw isDynamic(name);
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
      const secret = await this.lockNamed(tx, r.app.id, name, expectedVersion);
      await this.repo.delete(tx, secret.id); // versions cascade; a trigger deletes their ciphertext
    });
    // A dynamic secret's leases outlive it until the revocation sweep has revoked their roles.
    this.leases.wake();
  }

  /**
   * Generated secrets: new values from the HSM now, as a new version (the same path as a typed
   * update: delivery, status, restarts and audit behave alike); the schedule restarts from now.
   */
  async rotateNow(
    actor: Actor,
    project: string,
    app: string,
    name: string,
    expectedVersion: number | undefined,
  ): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    return this.membership.appContentChange(r.app.id, async (tx) => {
      const secret = await this.lockNamed(tx, r.app.id, name, expectedVersion);
      return { ...r, ...(await this.rotateLocked(tx, actor, r, secret)) };
    });
  }

  /** The app's secret `name`, row-locked in `tx`, at `expectedVersion` (If-Match) when given. */
  private async lockNamed(tx: Tx, appId: string, name: string, expectedVersion: number | undefined): Promise<SecretEntity> {
    const secret = secretNameProblem(name) ? null : await this.repo.lockByName(tx, appId, name);
    if (!secret) throw new SecretsError(SecretsErrorCode.SecretNotFound, `secret ${JSON.stringify(name)} not found`);
    checkVersion(expectedVersion, secret.version);
    return secret;
  }

  /** Sets (days) or clears (null) the rotation schedule of a generated secret. */
  async setRotation(
    actor: Actor,
    project: string,
    app: string,
    name: string,
    days: number | null,
    expectedVersion: number | undefined,
  ): Promise<SecretWithVersion> {
    const r = await this.apps.resolve(actor, project, app);
    // A plain transaction: the schedule changes nothing any cluster receives (no new generation).
    return this.uow.run(async (tx) => {
      const secret = await this.lockNamed(tx, r.app.id, name, expectedVersion);
      if (secret.dynamic) throw isDynamic(name);
      if (!secret.generator) throw notGenerated(name);
      await this.repo.setSchedule(tx, secret.id, days, this.config.rotation.daySeconds);
      const updated = (await this.repo.findByName(r.app.id, name, tx))!;
      return { ...r, secret: updated, current: (await this.repo.findVersion(updated.id, updated.currentVersion, tx))! };
    });
  }

  /**
   * The rotation sweep's unit of work: claims one due secret (SKIP LOCKED; null if another
   * replica has it or it is no longer due) and rotates it as `system:rotation`, with an
   * `attempted` audit record before and the outcome after, like a REST call.
   */
  async rotateDue(due: DueRotation): Promise<boolean> {
    const r = await this.apps.resolve(SYSTEM_ROTATION, due.project, due.app);
    const record = (outcome: 'attempted' | 'success' | 'failed', status: number, version?: number) =>
      this.audit.record({
        at: new Date(),
        actorId: null,
        actorName: SYSTEM_ROTATION.name,
        action: 'secret.rotate',
        method: 'SYSTEM',
        path: `/api/v1/projects/${due.project}/apps/${due.app}/secrets/${due.name}/rotate`,
        target: `project=${due.project} app=${due.app} secret=${due.name}${version !== undefined ? ` version=${version}` : ''} schedule=due`,
        projectName: due.project,
        outcome,
        status,
        requestId: null,
      });
    let attempted = false;
    let committed = false;
    try {
      const done = await this.membership.appContentChange(r.app.id, async (tx) => {
        const secret = await this.repo.claimDue(tx, due.id);
        if (!secret || secret.appId !== r.app.id) return null;
        // Under the row lock: nothing changes without a trace, even if the process dies now.
        await record('attempted', 0);
        attempted = true;
        return this.rotateLocked(tx, SYSTEM_ROTATION, r, secret);
      });
      if (!done) return false;
      committed = true;
      await record('success', 200, done.secret.currentVersion);
      return true;
    } catch (err) {
      // Only a rotation that did not commit failed; one whose success record could not be
      // written did happen (its version and the `attempted` record say so).
      if (attempted && !committed) await record('failed', 500).catch(() => undefined);
      if (committed) return true;
      throw err;
    }
  }

  private async rotateLocked(
    tx: Tx,
    actor: Actor,
    r: { project: ProjectEntity; app: AppEntity },
    secret: SecretEntity,
  ): Promise<{ secret: SecretEntity; current: SecretVersionEntity }> {
    if (secret.dynamic) throw isDynamic(secret.name);
    if (!secret.generator) throw notGenerated(secret.name);
    const values = checkValues(await this.generate(secret.generator), secret.type);
    try {
      const next = secret.latestVersion + 1;
      const current = await this.writeVersion(tx, actor, r, secret, next, values);
      secret.latestVersion = next;
      secret.currentVersion = next;
      const saved = await this.repo.saveSecret(tx, secret);
      Object.assign(saved, await this.repo.markRotated(tx, secret.id, this.config.rotation.daySeconds));
      return { secret: saved, current };
    } finally {
      for (const v of values.values()) v.fill(0);
    }
  }

  private generate(spec: GeneratorSpec): Promise<Map<string, Buffer>> {
    return generateValues(spec, (n) => this.hsm.generateRandom(n));
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
    // The copies made here (fingerprint inputs, the encoded payload) are zeroed once the HSM has them.
    const inputs = keys.map((k) => Buffer.concat([Buffer.from(`${secret.id}\0${k}\0`), values.get(k)!]));
    const payload = encodeSecretPayload(values);
    let fingerprints: string[];
    let sealedValueId: string | undefined;
    try {
      fingerprints = await this.hsm.fingerprint(inputs);
      [sealedValueId] = await this.sealer.seal(
        [{ value: payload, context: { projectId: r.project.id, app: r.app.name, secret: secret.name, secretId: secret.id, version } }],
        tx,
      );
    } finally {
      for (const b of inputs) b.fill(0);
      payload.fill(0);
    }
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
  return checkValues(values, type);
}

/** The actor of the rotation sweep: in the audit log and as `createdBy` of the versions it makes. */
export const SYSTEM_ROTATION = new Actor('system:rotation', 'system:rotation', 'admin', null);

/** Why creating a secret failed on a constraint: another owner of the Kubernetes Secret, a namespace move, a duplicate. */
function createConflict(err: unknown, namespace: string, app: string, name: string): unknown {
  const v = violatedConstraint(err)?.constraint;
  if (v === 'secrets_target_unique')
    return new SecretsError(
      SecretsErrorCode.SecretTargetConflict,
      `another app already delivers a Secret named ${name} in namespace ${namespace}; each Kubernetes Secret has one owner`,
    );
  if (v === 'secrets_app_namespace')
    return new SecretsError(SecretsErrorCode.AppChanged, `app ${JSON.stringify(app)} changed namespace meanwhile; try again`);
  if (isUniqueViolation(err))
    return new SecretsError(SecretsErrorCode.SecretExists, `secret ${JSON.stringify(name)} already exists in app ${JSON.stringify(app)}`);
  return err;
}

/** Types a credential fits: a database login is neither a certificate, a registry login nor an SSH key. */
const DYNAMIC_TYPES = new Set(['Opaque', 'kubernetes.io/basic-auth']);

const isDynamic = (name: string) =>
  new SecretsError(
    SecretsErrorCode.SecretIsDynamic,
    `secret ${JSON.stringify(name)} is dynamic: each cluster gets its own credential as a lease (GET …/leases; POST …/leases/{id}/revoke for a new one); it has no versions to write, roll back or rotate`,
  );

const isGenerated = (name: string) =>
  new SecretsError(
    SecretsErrorCode.SecretIsGenerated,
    `secret ${JSON.stringify(name)} is generated: its values come from the HSM only (POST …/rotate for new ones); to type values, delete it and create it with data`,
  );
const notGenerated = (name: string) =>
  new SecretsError(
    SecretsErrorCode.SecretNotGenerated,
    `secret ${JSON.stringify(name)} is typed, not generated: write a new version with PUT`,
  );

/** Secret types whose values have a structure random bytes never have. */
const STRUCTURED_TYPES = new Set(['kubernetes.io/tls', 'kubernetes.io/dockerconfigjson']);

/** Sizes and the type's rules, for typed and generated values alike; zeroes them when it refuses. */
export function checkValues(values: Map<string, Buffer>, type: string): Map<string, Buffer> {
  try {
    return checkSizesAndType(values, type);
  } catch (err) {
    for (const v of values.values()) v.fill(0);
    throw err;
  }
}

function checkSizesAndType(values: Map<string, Buffer>, type: string): Map<string, Buffer> {
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
