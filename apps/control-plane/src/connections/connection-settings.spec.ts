import { describe, expect, it } from '@jest/globals';
import {
  adminPasswordProblem,
  caCertificateProblem,
  defaultRolePrefix,
  hostProblem,
  pgNameProblem,
  portProblem,
  rolePrefixProblem,
} from './connection-settings.js';
import { sslOptions } from './engines/postgresql.engine.js';

describe('connection settings', () => {
  it('takes host names and IP addresses, nothing else', () => {
    for (const ok of ['db', 'orders.db.internal', '10.0.0.7', '::1', 'fe80::1', 'a-b.example.com'])
      expect([ok, hostProblem(ok)]).toEqual([ok, undefined]);
    for (const bad of ['', 'bad host', 'db;drop', '-db', 'db..internal', 'a'.repeat(254), 'db/5432', 7])
      expect(hostProblem(bad)).toBeDefined();
  });

  it('takes PostgreSQL names of 1-63 bytes without control characters, ports 1-65535', () => {
    expect(pgNameProblem('orders')).toBeUndefined();
    expect(pgNameProblem('Ordres-é')).toBeUndefined();
    expect(pgNameProblem('é'.repeat(32))).toMatch(/63 bytes/); // 64 bytes
    expect(pgNameProblem('a\nb')).toMatch(/control/);
    expect(pgNameProblem('')).toBeDefined();
    expect([portProblem(1), portProblem(65535)]).toEqual([undefined, undefined]);
    for (const bad of [0, 65536, 5432.5, '5432']) expect(portProblem(bad)).toBeDefined();
  });

  it('role prefixes are lowercase identifiers of 4-32 characters ending in _, never pg_; the default is derived from the id', () => {
    expect(rolePrefixProblem('sigil_orders_')).toBeUndefined();
    expect(rolePrefixProblem('app_')).toBeUndefined();
    for (const bad of ['Sigil_', '1sigil_', 'sigil-x_', `${'a'.repeat(32)}_`, '', 'p_', '_', '__x_', 'sigil', 'pg_sigil_'])
      expect(rolePrefixProblem(bad)).toBeDefined();
    expect(defaultRolePrefix('0b7e2b9c-3c1e-4f7a-9d55-5b1f0f3e8a22')).toBe('sigil_0b7e2b9c_');
    expect(rolePrefixProblem(defaultRolePrefix('0b7e2b9c-3c1e-4f7a-9d55-5b1f0f3e8a22'))).toBeUndefined();
  });

  it('passwords are 1-1024 characters without NUL; CAs are PEM certificates that parse', () => {
    expect(adminPasswordProblem('x')).toBeUndefined();
    for (const bad of ['', 'a\0b', 'a'.repeat(1025), 5]) expect(adminPasswordProblem(bad)).toBeDefined();
    expect(caCertificateProblem('not pem')).toMatch(/PEM/);
    expect(caCertificateProblem('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----')).toMatch(/does not parse/);
  });

  it('maps TLS modes to pg: disable none, require unverified, verify-full the chain (its CA) and the name', () => {
    expect(sslOptions({ tlsMode: 'disable' })).toBe(false);
    expect(sslOptions({ tlsMode: 'require' })).toEqual({ rejectUnauthorized: false });
    expect(sslOptions({ tlsMode: 'verify-full', caCertificate: 'PEM' })).toEqual({
      rejectUnauthorized: true,
      ca: 'PEM',
      minVersion: 'TLSv1.2',
    });
    expect(sslOptions({ tlsMode: 'verify-full' })).toEqual({ rejectUnauthorized: true, minVersion: 'TLSv1.2' });
  });
});
