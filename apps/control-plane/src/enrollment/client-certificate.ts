import { createPublicKey, randomBytes, verify as verifySignature, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { ECDSASigValue, id_ecdsaWithSHA256 } from '@peculiar/asn1-ecc';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  Validity,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
} from '@peculiar/asn1-x509';

/**
 * Client certificates for agents, assembled from a per-CA template with the ASN.1 schema
 * library (@peculiar/asn1-x509), and CSRs checked with Node's native crypto. Only what differs
 * per certificate (serial, validity, subject, key, SAN) is built per call; the issuer, the
 * signature algorithm and the constant extensions are made once per CA. This replaces
 * @peculiar/x509's generator, whose WebCrypto plumbing cost ~3 ms of main-thread time per
 * enrollment (docs/benchmarks.md, "Enrollment").
 */

/** Signature algorithms an agent's CSR may use, by OID, as Node names their hash. */
const CSR_SIGNATURE_HASH: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384', // ecdsa-with-SHA384
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};
const OID_CN = '2.5.4.3';
const OID_O = '2.5.4.10';

export class CsrRejected extends Error {}

/** A CSR whose signature verifies under its own key (proof of possession); its key in canonical SPKI DER. */
export interface VerifiedCsr {
  spkiDer: Buffer;
}

/** The parts of a PKCS#10 request (RFC 2986) a signature check needs, as their DER. */
function csrParts(der: Buffer): { info: Uint8Array; spki: Uint8Array; algorithm: string; signature: Uint8Array } {
  const parsed = asn1js.fromBER(der);
  const request = parsed.result;
  if (parsed.offset !== der.length || !(request instanceof asn1js.Sequence)) throw new CsrRejected('not a DER PKCS#10 certificate request');
  const [info, algorithm, signature] = request.valueBlock.value;
  const spki = info instanceof asn1js.Sequence ? info.valueBlock.value[2] : undefined;
  const oid = algorithm instanceof asn1js.Sequence ? algorithm.valueBlock.value[0] : undefined;
  if (
    !(spki instanceof asn1js.Sequence) ||
    !(oid instanceof asn1js.ObjectIdentifier) ||
    !(signature instanceof asn1js.BitString) ||
    signature.valueBlock.unusedBits !== 0
  )
    throw new CsrRejected('not a DER PKCS#10 certificate request');
  return {
    info: info!.valueBeforeDecodeView,
    spki: spki.valueBeforeDecodeView,
    algorithm: oid.valueBlock.toString(),
    signature: signature.valueBlock.valueHexView,
  };
}

/**
 * Parses a DER PKCS#10 request and checks its signature with the key it names (asn1js finds
 * the parts, Node's crypto checks them). Accepts ECDSA P-256/P-384 and RSA ≥ 2048-bit keys only.
 */
export function verifyCsr(der: Buffer): VerifiedCsr {
  const csr = csrParts(der);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(csr.spki), format: 'der', type: 'spki' });
  } catch {
    throw new CsrRejected('the CSR public key is not a valid SubjectPublicKeyInfo');
  }
  const details = key.asymmetricKeyDetails ?? {};
  const acceptable =
    (key.asymmetricKeyType === 'ec' && ['prime256v1', 'secp384r1'].includes(details.namedCurve ?? '')) ||
    (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048);
  if (!acceptable) throw new CsrRejected('the CSR key must be ECDSA P-256/P-384 or RSA ≥ 2048 bits');
  const hash = CSR_SIGNATURE_HASH[csr.algorithm];
  if (!hash || !verifiesQuietly(hash, csr.info, key, csr.signature)) throw new CsrRejected('the CSR signature does not verify');
  // Canonical SPKI DER: what the certificate carries and what the authenticator hashes later.
  return { spkiDer: key.export({ type: 'spki', format: 'der' }) };
}

/** A malformed signature is a failed check, not an error. */
function verifiesQuietly(hash: string, data: Uint8Array, key: KeyObject, signature: Uint8Array): boolean {
  try {
    return verifySignature(hash, data, key, signature);
  } catch {
    return false;
  }
}

/** A random positive 128-bit serial number. */
export function randomSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x10; // positive, and 16 bytes long
  return serial;
}

const extension = (extnID: string, critical: boolean, value: unknown) =>
  new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });

/** An INTEGER's minimal two's-complement content for an unsigned big-endian value (ECDSA r, s). */
function unsignedInteger(bytes: Uint8Array): ArrayBuffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  const out = new Uint8Array(trimmed[0]! & 0x80 ? trimmed.length + 1 : trimmed.length);
  out.set(trimmed, out.length - trimmed.length);
  return out.buffer;
}

/** A certificate's to-be-signed DER (what the CA signs). */
export type UnsignedCertificate = Buffer;

/** [n] EXPLICIT, as X.509 tags the version and the extensions. */
const explicit = (tagNumber: number, inner: asn1js.AsnType) =>
  new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value: [inner] });
/**
 * A value asn1js (or asn1-schema) has already encoded, placed as is inside a structure asn1js
 * encodes. (asn1js's own RawData is skipped by constructed values, which encode their members
 * into a shared writer.)
 */
class Encoded extends asn1js.RawData {
  override toBER(sizeOnly?: boolean, writer?: { write(b: ArrayBuffer): void }): ArrayBuffer {
    const der = super.toBER(sizeOnly);
    if (!writer) return der;
    writer.write(der);
    return new ArrayBuffer(0);
  }
}
/** (Typed as a block: asn1js's types list only its own classes as members of a constructed value.) */
const encoded = (der: ArrayBuffer | Uint8Array) => new Encoded({ data: der }) as unknown as asn1js.BaseBlock;
const der = (value: unknown) => encoded(AsnConvert.serialize(value));

/**
 * The parts of every client certificate a CA issues that do not change between certificates,
 * encoded once (issuer, signature algorithm, basic constraints, key usage, extended key usage,
 * authority key identifier); per certificate only the serial, validity, subject, key and SAN
 * are encoded, and the constant parts' DER is placed next to them.
 */
export class ClientCertificateTemplate {
  private readonly issuer: asn1js.BaseBlock;
  private readonly algorithm = der(new AlgorithmIdentifier({ algorithm: id_ecdsaWithSHA256 }));
  private readonly fixedExtensions: asn1js.BaseBlock[];

  constructor(caCertificateDer: Buffer) {
    const ca = AsnConvert.parse(caCertificateDer, Certificate).tbsCertificate;
    this.issuer = der(ca.subject);
    const caKeyId = ca.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
    if (!caKeyId) throw new Error('the CA certificate has no subject key identifier');
    const keyIdentifier = AsnConvert.parse(caKeyId.extnValue.buffer, SubjectKeyIdentifier);
    this.fixedExtensions = [
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
      extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_clientAuth])),
      extension(
        id_ce_authorityKeyIdentifier,
        false,
        new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyIdentifier.buffer) }),
      ),
    ].map(der);
  }

  /** The to-be-signed DER of a client certificate: CN=<cluster name>, O=Sigil clusters; SAN URI; clientAuth. */
  toBeSigned(req: {
    serial: Buffer;
    notBefore: Date;
    notAfter: Date;
    commonName: string;
    spkiDer: Buffer;
    uri: string;
  }): UnsignedCertificate {
    const rdn = (type: string, value: string) =>
      new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) })]);
    const subject = new Name([rdn(OID_CN, req.commonName), rdn(OID_O, 'Sigil clusters')]);
    const san = extension(
      id_ce_subjectAltName,
      false,
      new SubjectAlternativeName([new GeneralName({ uniformResourceIdentifier: req.uri })]),
    );
    const tbs = new asn1js.Sequence({
      value: [
        explicit(0, new asn1js.Integer({ value: 2 })), // v3
        new asn1js.Integer({ valueHex: req.serial }),
        this.algorithm,
        this.issuer,
        der(new Validity({ notBefore: req.notBefore, notAfter: req.notAfter })),
        der(subject),
        encoded(req.spkiDer),
        explicit(3, new asn1js.Sequence({ value: [...this.fixedExtensions, der(san)] })),
      ],
    });
    return Buffer.from(tbs.toBER());
  }

  /** The certificate: the to-be-signed bytes as signed, and the CA's raw (r ‖ s) P-256 signature of them. */
  assemble(unsigned: UnsignedCertificate, rawSignature: Buffer): Buffer {
    const signature = new ECDSASigValue({
      r: unsignedInteger(rawSignature.subarray(0, 32)),
      s: unsignedInteger(rawSignature.subarray(32, 64)),
    });
    const cert = new asn1js.Sequence({
      value: [encoded(unsigned), this.algorithm, new asn1js.BitString({ valueHex: AsnConvert.serialize(signature) })],
    });
    return Buffer.from(cert.toBER());
  }
}
