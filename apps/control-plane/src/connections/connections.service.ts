import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Actor } from '../auth/policy.js';
import { checkVersion, toPage, type Page } from '../common/http.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { isUniqueViolation, sqlState, violatedConstraint } from '../database/constraint-violation.js';
import { UnitOfWork, type Tx } from '../database/transaction.js';
import { SealedValueService } from '../keys/sealed-values.service.js';
import type { ProjectEntity } from '../projects/project.entity.js';
import { ProjectsService } from '../projects/projects.service.js';
import type { DatabaseConnectionEntity } from './connection.entity.js';
import { defaultRolePrefix } from './connection-settings.js';
import type { CreateConnectionDto, UpdateConnectionDto } from './connections.dto.js';
import { ConnectionsError, ConnectionsErrorCode } from './connections.errors.js';
import { ConnectionsRepository } from './connections.repository.js';
import {
  CredentialEngineError,
  type ConnectionTarget,
  type CredentialEngine,
  type EngineName,
  type EngineServerInfo,
} from './engines/credential-engine.js';
import { NetworkDialPolicy, ownService, type DialLogin, type DialPolicy } from './engines/dial-policy.js';
import { PostgresCredentialEngine } from './engines/postgresql.engine.js';

/**
 * Who still creates roles through a connection (dynamic secrets register one, from their own
 * module, so connections/ depends on no feature that depends on it): the names of what uses it,
 * read in `tx`, the transaction that holds the connection's row lock for the delete.
 */
export type ConnectionUsage = (tx: Tx, connectionId: string) => Promise<string[]>;

/** How many roles issued through a connection may still exist on its server (leases not yet revoked). */
export type LiveRoleCount = (tx: Tx, connectionId: string) => Promise<number>;

/** Fields that say where the admin password is sent and how: changing one needs the password again. */
const DESTINATION_FIELDS = ['host', 'port', 'username', 'tlsMode', 'caCertificate'] as const;
/** Fields that say which server (and database) the roles live on. */
const SERVER_FIELDS = ['host', 'port', 'database'] as const;

/**
 * Database connections (docs/dynamic-secrets.md, "Connections"): registered per project, with
 * an admin password that is sealed on arrival and opened (target) only for one engine call.
 */
@Injectable()
export class ConnectionsService {
  private readonly usage: ConnectionUsage[] = [];
  private readonly liveRoles: LiveRoleCount[] = [];
  private readonly engines: Record<EngineName, CredentialEngine>;
  private readonly dial: DialPolicy;

  constructor(
    @Inject(ProjectsService) private readonly projects: ProjectsService,
    @Inject(ConnectionsRepository) private readonly repo: ConnectionsRepository,
    @Inject(SealedValueService) private readonly sealer: SealedValueService,
    @Inject(UnitOfWork) private readonly uow: UnitOfWork,
    @Inject(RuntimeConfig) config: RuntimeConfig,
  ) {
    const dial = (this.dial = new NetworkDialPolicy({
      denied: config.connections.deniedNetworks,
      allowed: config.connections.allowedNetworks,
      own: [ownService(config.db.url), ownService(config.redis.url)].filter((e) => e !== undefined),
    }));
    this.engines = { postgresql: new PostgresCredentialEngine({}, dial) };
  }

  /** A check delete runs under the row lock: any name it returns refuses the delete (409 connection_in_use). */
  onUsageCheck(usage: ConnectionUsage): void {
    this.usage.push(usage);
  }

  /** A count update runs under the row lock before moving the connection to another server. */
  onLiveRolesCheck(count: LiveRoleCount): void {
    this.liveRoles.push(count);
  }

  engineFor(engine: EngineName): CredentialEngine {
    const e = (this.engines as Partial<Record<string, CredentialEngine>>)[engine];
    if (!e) throw new ConnectionsError(ConnectionsErrorCode.InvalidConnection, `no engine ${JSON.stringify(engine)}`);
    return e;
  }

  /**
   * The connection with its admin password opened in the HSM, for one engine call: the caller
   * zeroes `adminPassword` when the call is done (`finally`).
   */
  async target(tx: Tx | undefined, projectId: string, connectionName: string): Promise<ConnectionTarget> {
    const c = dns1123LabelProblem(connectionName) ? null : await this.repo.findByName(projectId, connectionName, tx);
    if (!c) throw notFound(connectionName);
    return this.open(tx, c);
  }

  /** As target, by the connection's id (what a dynamic secret stores). */
  async targetById(tx: Tx | undefined, connectionId: string): Promise<ConnectionTarget> {
    const c = await this.repo.findById(connectionId, tx);
    if (!c) throw new ConnectionsError(ConnectionsErrorCode.ConnectionNotFound, 'the connection no longer exists');
    return this.open(tx, c);
  }

  /** The connection row (no password), for features that reference it by name. */
  /** `hold` (with `tx`): the row stays locked FOR KEY SHARE until `tx` ends, so a delete waits for it. */
  async find(tx: Tx | undefined, projectId: string, connectionName: string, hold = false): Promise<DatabaseConnectionEntity> {
    const c = dns1123LabelProblem(connectionName) ? null : await this.repo.findByName(projectId, connectionName, tx, hold);
    if (!c) throw notFound(connectionName);
    return c;
  }

  async resolve(actor: Actor, project: string, name: string): Promise<{ project: ProjectEntity; connection: DatabaseConnectionEntity }> {
    const p = await this.projects.resolve(actor, project);
    return { project: p, connection: await this.find(undefined, p.id, name) };
  }

  async list(
    actor: Actor,
    project: string,
    after: string | undefined,
    limit: number,
  ): Promise<{ project: ProjectEntity; page: Page<DatabaseConnectionEntity> }> {
    const p = await this.projects.resolve(actor, project);
    return { project: p, page: toPage(await this.repo.list(p.id, after, limit + 1), limit, (c) => c.name) };
  }

  async create(actor: Actor, project: string, dto: CreateConnectionDto) {
    const p = await this.projects.resolve(actor, project);
    await this.checkDestination(dto.host, dto.port ?? 5432, dto);
    const id = randomUUID();
    const password = Buffer.from(dto.adminPassword, 'utf8');
    try {
      const rolePrefix = dto.rolePrefix ?? defaultRolePrefix(id);
      const connection = await this.uow.run(async (tx) => {
        await this.repo.lockForPrefixCheck(tx);
        const overlapping = await this.repo.overlappingPrefixes(rolePrefix, tx);
        if (overlapping.length > 0)
          throw new ConnectionsError(
            ConnectionsErrorCode.RolePrefixTaken,
            `role prefix ${rolePrefix} overlaps the prefix of another connection of this installation (one starts with the other), so each would reap the other's roles; choose another`,
          );
        const sealed = await this.sealer.sealConnectionSecret(tx, { projectId: p.id, connectionId: id }, password);
        return this.repo.insert(
          {
            id,
            projectId: p.id,
            name: dto.name,
            engine: dto.engine ?? 'postgresql',
            host: dto.host,
            port: dto.port ?? 5432,
            database: dto.database,
            username: dto.username,
            tlsMode: dto.tlsMode ?? 'verify-full',
            caCertificate: dto.caCertificate ?? null,
            rolePrefix,
            adminPasswordSealedValueId: sealed,
            adminPasswordSetAt: new Date(),
          },
          tx,
        );
      });
      return { project: p, connection };
    } catch (err) {
      if (violatedConstraint(err)?.constraint === 'database_connections_role_prefix_unique')
        throw new ConnectionsError(
          ConnectionsErrorCode.RolePrefixTaken,
          `another connection already uses role prefix ${dto.rolePrefix ?? ''}; each would reap the other's roles`,
        );
      if (isUniqueViolation(err))
        throw new ConnectionsError(
          ConnectionsErrorCode.ConnectionExists,
          `connection ${JSON.stringify(dto.name)} already exists in project ${JSON.stringify(project)}`,
        );
      throw err;
    } finally {
      password.fill(0); // sealed (and zeroed) already, unless something failed first
    }
  }

  async update(actor: Actor, project: string, name: string, dto: UpdateConnectionDto, expectedVersion: number | undefined) {
    const { project: p, connection: found } = await this.resolve(actor, project, name);
    const changes = (f: keyof UpdateConnectionDto & keyof DatabaseConnectionEntity) =>
      dto[f] !== undefined && (f === 'caCertificate' ? (dto.caCertificate || null) !== found.caCertificate : dto[f] !== found[f]);
    // Otherwise a caller who may edit but never read the password points the connection at a
    // server of theirs and lets Sigil log in there (decision 019).
    const redirected = DESTINATION_FIELDS.filter(changes);
    if (redirected.length > 0 && dto.adminPassword === undefined)
      throw new ConnectionsError(
        ConnectionsErrorCode.AdminPasswordRequired,
        `changing ${redirected.join(', ')} changes where the admin password is sent: send adminPassword in the same request`,
      );
    if ((['host', 'port', 'database', 'username'] as const).some(changes))
      await this.checkDestination(dto.host ?? found.host, dto.port ?? found.port, {
        database: dto.database ?? found.database,
        username: dto.username ?? found.username,
      });
    const moved = SERVER_FIELDS.filter(changes);
    const password = dto.adminPassword === undefined ? undefined : Buffer.from(dto.adminPassword, 'utf8');
    try {
      const connection = await this.uow.run(async (tx) => {
        if (moved.length > 0) {
          // Revocations go to the connection's current server: roles left on the old one would
          // be "revoked" on the new one, where they do not exist, and keep working.
          if (!(await this.repo.lock(found.id, tx))) throw notFound(name);
          const live = (await Promise.all(this.liveRoles.map((count) => count(tx, found.id)))).reduce((a, b) => a + b, 0);
          if (live > 0)
            throw new ConnectionsError(
              ConnectionsErrorCode.ConnectionHasLiveRoles,
              `changing ${moved.join(', ')} moves the connection to another server while ${live} credentials issued through it are not yet revoked; unpublish or revoke them first, or register a new connection`,
            );
        }
        // Sealed first (the HSM call takes no row lock); a refused version rolls the new sealed row back with the rest.
        const sealed = password && (await this.sealer.sealConnectionSecret(tx, { projectId: p.id, connectionId: found.id }, password));
        return this.repo.updateLocked(
          found.id,
          (c) => {
            checkVersion(expectedVersion, c.version);
            if (dto.host !== undefined) c.host = dto.host;
            if (dto.port !== undefined) c.port = dto.port;
            if (dto.database !== undefined) c.database = dto.database;
            if (dto.username !== undefined) c.username = dto.username;
            if (dto.tlsMode !== undefined) c.tlsMode = dto.tlsMode;
            if (dto.caCertificate !== undefined) c.caCertificate = dto.caCertificate === '' ? null : dto.caCertificate;
            if (sealed) {
              c.adminPasswordSealedValueId = sealed; // the old sealed row goes (trigger)
              c.adminPasswordSetAt = new Date();
            }
          },
          tx,
        );
      });
      if (!connection) throw notFound(name);
      return { project: p, connection };
    } finally {
      password?.fill(0);
    }
  }

  async delete(actor: Actor, project: string, name: string, expectedVersion: number | undefined): Promise<void> {
    const { connection: found } = await this.resolve(actor, project, name);
    try {
      await this.uow.run(async (tx) => {
        const c = await this.repo.lock(found.id, tx);
        if (!c) return;
        checkVersion(expectedVersion, c.version);
        const users = (await Promise.all(this.usage.map((u) => u(tx, c.id)))).flat();
        if (users.length > 0) throw inUse(name, users);
        await this.repo.delete(c.id, tx);
      });
    } catch (err) {
      // No foreign key points at a connection today (a dynamic secret names it in its spec and
      // holds the row FOR KEY SHARE while it is written); kept for one a future feature may add.
      if (sqlState(err) === '23503') throw inUse(name, []);
      throw err;
    }
  }

  /** Connects with the admin credential: the server's version and whether the admin may create roles. */
  async verify(actor: Actor, project: string, name: string): Promise<{ connection: DatabaseConnectionEntity; info: EngineServerInfo }> {
    const { connection } = await this.resolve(actor, project, name);
    const target = await this.open(undefined, connection);
    try {
      return { connection, info: await this.engineFor(connection.engine).verify(target) };
    } catch (err) {
      if (err instanceof CredentialEngineError && err.code === 'host_denied')
        throw new ConnectionsError(ConnectionsErrorCode.ConnectionHostDenied, `connection ${name}: ${err.message}`);
      if (err instanceof CredentialEngineError)
        throw new ConnectionsError(ConnectionsErrorCode.ConnectionFailed, `connection ${name}: ${err.message}`, { reason: err.code });
      throw err;
    } finally {
      target.adminPassword.fill(0);
    }
  }

  /**
   * Refuses a host the dial policy denies now (400 connection_host_denied), so the mistake shows
   * when it is made; every dial checks again (DNS can change). A name that does not resolve yet
   * is accepted: verify and issuance then report it unreachable.
   */
  private async checkDestination(host: string, port: number, login: DialLogin): Promise<void> {
    try {
      await this.dial.addressFor(host, port, login);
    } catch (err) {
      if (err instanceof CredentialEngineError && err.code === 'host_denied')
        throw new ConnectionsError(ConnectionsErrorCode.ConnectionHostDenied, err.message);
    }
  }

  private async open(tx: Tx | undefined, c: DatabaseConnectionEntity): Promise<ConnectionTarget> {
    const adminPassword = await this.sealer.openConnectionSecret(
      tx,
      { projectId: c.projectId, connectionId: c.id },
      c.adminPasswordSealedValueId,
    );
    return {
      id: c.id,
      host: c.host,
      port: c.port,
      database: c.database,
      username: c.username,
      tlsMode: c.tlsMode,
      ...(c.caCertificate === null ? {} : { caCertificate: c.caCertificate }),
      rolePrefix: c.rolePrefix,
      adminPassword,
    };
  }
}

const notFound = (name: string) =>
  new ConnectionsError(ConnectionsErrorCode.ConnectionNotFound, `connection ${JSON.stringify(name)} not found`);

const inUse = (name: string, users: string[]) =>
  new ConnectionsError(
    ConnectionsErrorCode.ConnectionInUse,
    `connection ${JSON.stringify(name)} is used by ${users.length > 0 ? users.slice(0, 10).join(', ') : 'a dynamic secret'}; delete those first`,
  );
