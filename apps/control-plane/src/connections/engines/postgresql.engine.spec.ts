import net from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import { CredentialEngineError } from './credential-engine.js';
import { PostgresCredentialEngine } from './postgresql.engine.js';

/**
 * A server that speaks just enough of PostgreSQL's protocol to ask for the password the weak way
 * (AuthenticationCleartextPassword = 3, AuthenticationMD5Password = 5), or to let the client in
 * without asking (AuthenticationOk = 0, then ReadyForQuery: `trust`), and records every byte the
 * client sends after the startup message.
 */
async function askingServer(method: 0 | 3 | 5): Promise<{ port: number; received: () => Buffer; close: () => Promise<void> }> {
  const after: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    let buf = Buffer.alloc(0);
    let started = false;
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      if (started) {
        after.push(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return;
      started = true;
      const ask = Buffer.alloc(method === 5 ? 13 : 9);
      ask.write('R', 0);
      ask.writeInt32BE(ask.length - 1, 1);
      ask.writeInt32BE(method, 5);
      if (method === 5) ask.write('salt', 9);
      sock.write(ask);
      if (method === 0) sock.write(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])); // ReadyForQuery, idle
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => Buffer.concat(after),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const target = (port: number, password: string) => ({
  id: 'c',
  host: '127.0.0.1',
  port,
  database: 'd',
  username: 'sigil_admin',
  tlsMode: 'disable' as const,
  rolePrefix: 'sigil_x_',
  adminPassword: Buffer.from(password),
});

describe('PostgreSQL engine: authentication', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => close?.());

  it('refuses a server that lets the admin in without a password (trust): auth_failed, and no query sent', async () => {
    const server = await askingServer(0);
    close = server.close;
    const err = await new PostgresCredentialEngine({ connectTimeoutMs: 3_000 })
      .verify(target(server.port, 'canary-admin-password-9c1d'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialEngineError);
    expect((err as CredentialEngineError).code).toBe('auth_failed');
    expect((err as CredentialEngineError).message).toContain('without checking a password');
    await new Promise((r) => setTimeout(r, 100));
    expect(server.received().includes(0x51)).toBe(false); // no Query ('Q'): nothing ran on that server
  });

  for (const [method, how] of [
    [3, 'in clear text'],
    [5, 'as MD5'],
  ] as const)
    it(`never answers a server asking for the password ${how}: auth_failed, and not a byte of it sent`, async () => {
      const server = await askingServer(method);
      close = server.close;
      const password = 'canary-admin-password-7f3a';
      const err = await new PostgresCredentialEngine({ connectTimeoutMs: 3_000 })
        .verify(target(server.port, password))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CredentialEngineError);
      expect((err as CredentialEngineError).code).toBe('auth_failed');
      expect((err as CredentialEngineError).message).toContain(`asked for the admin password ${how}`);
      await new Promise((r) => setTimeout(r, 100)); // anything written would have arrived by now
      const sent = server.received();
      expect(sent.includes(Buffer.from(password))).toBe(false);
      expect(sent.includes(0x70)).toBe(false); // no PasswordMessage ('p') at all
    });
});
