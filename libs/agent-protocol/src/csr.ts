import { createPublicKey, sign, type KeyObject } from 'node:crypto';

// A PKCS#10 certificate request (RFC 2986) for an EC P-256 key, DER-encoded with node:crypto
// only. The agent needs exactly this one structure; a general X.509 library costs it ~13 MiB of
// resident memory (docs/decisions/007). The control plane parses and verifies it with
// @peculiar/x509, and tests check the two agree.

const der = (tag: number, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
};
const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER_ZERO = Buffer.from([0x02, 0x01, 0x00]);
const OID_COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);
const ECDSA_WITH_SHA256 = der(SEQUENCE, Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));

/** DER of a PKCS#10 request with subject CN=`commonName`, signed by `privateKey` (EC P-256). */
export function createCsr(commonName: string, privateKey: KeyObject): Buffer {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('the CSR key must be EC P-256');
  }
  const subject = der(SEQUENCE, der(SET, der(SEQUENCE, OID_COMMON_NAME, der(0x0c, Buffer.from(commonName, 'utf8')))));
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const info = der(SEQUENCE, INTEGER_ZERO, subject, spki, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, privateKey); // DER ECDSA-Sig-Value
  return der(SEQUENCE, info, ECDSA_WITH_SHA256, der(0x03, Buffer.from([0x00]), signature));
}
