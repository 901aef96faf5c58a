import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { scramKeys, scramPasswordProblem, scramVerifier } from './scram.js';

// RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
const SALT = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
const CLIENT_FIRST_BARE = 'n=user,r=rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const CLIENT_FINAL_WITHOUT_PROOF = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const PROOF = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
const SERVER_SIGNATURE = Buffer.from('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', 'base64');
const AUTH_MESSAGE = `${CLIENT_FIRST_BARE},${SERVER_FIRST},${CLIENT_FINAL_WITHOUT_PROOF}`;

describe('SCRAM-SHA-256 verifier', () => {
  it("reproduces RFC 7677's exchange: the server signature, and the client proof checks against StoredKey", () => {
    const { storedKey, serverKey } = scramKeys(Buffer.from('pencil'), SALT, 4096);
    // What a server holding only the verifier does: sign with ServerKey, recover ClientKey from the proof.
    expect(createHmac('sha256', serverKey).update(AUTH_MESSAGE).digest()).toEqual(SERVER_SIGNATURE);
    const signature = createHmac('sha256', storedKey).update(AUTH_MESSAGE).digest();
    const clientKey = Buffer.from(PROOF.map((b, i) => b ^ signature[i]!));
    expect(createHash('sha256').update(clientKey).digest()).toEqual(storedKey);
  });

  it("is PostgreSQL's format, with a fresh 16-byte salt each time", () => {
    const a = scramVerifier(Buffer.from('pencil'));
    const b = scramVerifier(Buffer.from('pencil'));
    const m = /^SCRAM-SHA-256\$4096:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(a);
    expect(m).not.toBeNull();
    expect(Buffer.from(m![1]!, 'base64')).toHaveLength(16);
    expect(Buffer.from(m![2]!, 'base64')).toHaveLength(32);
    expect(Buffer.from(m![3]!, 'base64')).toHaveLength(32);
    expect(a).not.toBe(b);
    const { storedKey, serverKey } = scramKeys(Buffer.from('pencil'), SALT);
    expect(scramVerifier(Buffer.from('pencil'), SALT)).toBe(
      `SCRAM-SHA-256$4096:${SALT.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`,
    );
    expect(a).not.toContain('pencil');
  });

  it('takes printable ASCII only (SASLprep leaves it unchanged), and no empty password', () => {
    expect(scramPasswordProblem(Buffer.from('Aa0 ~!'))).toBeUndefined();
    expect(scramPasswordProblem(Buffer.from(''))).toMatch(/empty/);
    expect(scramPasswordProblem(Buffer.from('päss'))).toMatch(/printable ASCII/);
    expect(scramPasswordProblem(Buffer.from('a\nb'))).toMatch(/printable ASCII/);
    expect(() => scramVerifier(Buffer.from('ä'))).toThrow(RangeError);
  });
});
