import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn } from 'class-validator';
import { IsAbsentOr, IsDns1123Label, rule } from '../common/validators.js';
import type { DatabaseConnectionEntity } from './connection.entity.js';
import {
  adminPasswordProblem,
  caCertificateProblem,
  hostProblem,
  MAX_ADMIN_PASSWORD,
  MAX_CA_CERTIFICATE,
  pgNameProblem,
  portProblem,
  rolePrefixProblem,
} from './connection-settings.js';
import { ENGINE_NAMES, TLS_MODES, type EngineName, type TlsMode } from './engines/credential-engine.js';

const IsHost = () => rule('isHost', hostProblem);
const IsPort = () => rule('isPort', portProblem);
const IsPgName = () => rule('isPgName', pgNameProblem);
const IsRolePrefix = () => rule('isRolePrefix', rolePrefixProblem);
const IsAdminPassword = () => rule('isAdminPassword', adminPasswordProblem);
const IsCaCertificate = () => rule('isCaCertificate', (v) => (v === '' ? undefined : caCertificateProblem(v)));
const IsCaCertificateOnCreate = () => rule('isCaCertificate', caCertificateProblem);

const TLS_DOC =
  'verify-full (default): TLS, the certificate checked against caCertificate (or the system roots) and the host name; ' +
  'require: TLS without any certificate check (stops eavesdropping, not a man in the middle); disable: no TLS';
const PASSWORD_DOC =
  'the admin role’s password: write-only, sealed by the HSM on arrival, never returned (responses show adminPasswordSetAt)';

export class CreateConnectionDto {
  @ApiProperty({ example: 'orders-db', description: 'DNS-1123 label, unique within the project' })
  @IsDns1123Label()
  name!: string;

  @ApiPropertyOptional({ enum: ENGINE_NAMES, default: 'postgresql' })
  @IsAbsentOr()
  @IsIn(ENGINE_NAMES)
  engine?: EngineName;

  @ApiProperty({ example: 'orders.db.internal', description: 'host name or IP address' })
  @IsHost()
  host!: string;

  @ApiPropertyOptional({ example: 5432, default: 5432, minimum: 1, maximum: 65535 })
  @IsAbsentOr()
  @IsPort()
  port?: number;

  @ApiProperty({ example: 'orders', description: 'the database roles are granted in' })
  @IsPgName()
  database!: string;

  @ApiProperty({ example: 'sigil_admin', description: 'the admin role Sigil connects as (CREATEROLE; docs/dynamic-secrets.md)' })
  @IsPgName()
  username!: string;

  @ApiProperty({ description: PASSWORD_DOC, format: 'password', writeOnly: true, maxLength: MAX_ADMIN_PASSWORD })
  @IsAdminPassword()
  adminPassword!: string;

  @ApiPropertyOptional({ enum: TLS_MODES, default: 'verify-full', description: TLS_DOC })
  @IsAbsentOr()
  @IsIn(TLS_MODES)
  tlsMode?: TlsMode;

  @ApiPropertyOptional({
    description: 'PEM: the CA(s) verify-full trusts for this server instead of the system roots',
    maxLength: MAX_CA_CERTIFICATE,
  })
  @IsAbsentOr()
  @IsCaCertificateOnCreate()
  caCertificate?: string;

  @ApiPropertyOptional({
    example: 'sigil_orders_',
    description: 'every role Sigil creates here starts with it; default sigil_<8 hex digits of the id>_; fixed once created',
  })
  @IsAbsentOr()
  @IsRolePrefix()
  rolePrefix?: string;
}

export class UpdateConnectionDto {
  @ApiPropertyOptional({ example: 'orders.db.internal' })
  @IsAbsentOr()
  @IsHost()
  host?: string;

  @ApiPropertyOptional({ example: 5432, minimum: 1, maximum: 65535 })
  @IsAbsentOr()
  @IsPort()
  port?: number;

  @ApiPropertyOptional({ example: 'orders' })
  @IsAbsentOr()
  @IsPgName()
  database?: string;

  @ApiPropertyOptional({ example: 'sigil_admin' })
  @IsAbsentOr()
  @IsPgName()
  username?: string;

  @ApiPropertyOptional({
    description:
      `replaces the password; ${PASSWORD_DOC}. Required in the same request when host, port, username, tlsMode or caCertificate ` +
      'change (400 admin_password_required: they say where the password is sent). host, port and database cannot change while ' +
      'credentials issued through the connection are not yet revoked (409 connection_has_live_roles)',
    format: 'password',
    writeOnly: true,
    maxLength: MAX_ADMIN_PASSWORD,
  })
  @IsAbsentOr()
  @IsAdminPassword()
  adminPassword?: string;

  @ApiPropertyOptional({ enum: TLS_MODES, description: TLS_DOC })
  @IsAbsentOr()
  @IsIn(TLS_MODES)
  tlsMode?: TlsMode;

  @ApiPropertyOptional({ description: 'PEM; an empty string removes it', maxLength: MAX_CA_CERTIFICATE })
  @IsAbsentOr()
  @IsCaCertificate()
  caCertificate?: string;
}

export class ConnectionView {
  @ApiProperty() id!: string;
  @ApiProperty({ example: 'payments' }) project!: string;
  @ApiProperty({ example: 'orders-db' }) name!: string;
  @ApiProperty({ enum: ENGINE_NAMES }) engine!: EngineName;
  @ApiProperty({ example: 'orders.db.internal' }) host!: string;
  @ApiProperty({ example: 5432 }) port!: number;
  @ApiProperty({ example: 'orders' }) database!: string;
  @ApiProperty({ example: 'sigil_admin' }) username!: string;
  @ApiProperty({ enum: TLS_MODES }) tlsMode!: TlsMode;
  @ApiProperty({ nullable: true, type: String, description: 'PEM' }) caCertificate!: string | null;
  @ApiProperty({ example: 'sigil_1a2b3c4d_' }) rolePrefix!: string;
  @ApiProperty({ description: 'when the admin password was last written (the password itself is never returned)' })
  adminPasswordSetAt!: Date;
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;

  static of(c: DatabaseConnectionEntity, project: string): ConnectionView {
    return {
      id: c.id,
      project,
      name: c.name,
      engine: c.engine,
      host: c.host,
      port: c.port,
      database: c.database,
      username: c.username,
      tlsMode: c.tlsMode,
      caCertificate: c.caCertificate,
      rolePrefix: c.rolePrefix,
      adminPasswordSetAt: c.adminPasswordSetAt,
      version: c.version,
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
    };
  }
}

export class ConnectionPage {
  @ApiProperty({ type: [ConnectionView] }) items!: ConnectionView[];
  @ApiProperty({ nullable: true, type: String }) next!: string | null;
}

export class ConnectionVerification {
  @ApiProperty({ example: '18.4' }) serverVersion!: string;
  @ApiProperty({ description: 'whether Sigil can issue credentials as the admin role: CREATEROLE and not a superuser' })
  canCreateRoles!: boolean;
  @ApiProperty({ description: 'the admin role is a superuser, which Sigil refuses to issue through (use a CREATEROLE role)' })
  superuser!: boolean;
}
