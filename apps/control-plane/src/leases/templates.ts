import type { TlsMode } from '../connections/engines/credential-engine.js';

/** What a dynamic secret's key templates may use ({{password}} is bytes: never a JS string). */
export interface CredentialFacts {
  username: string;
  password: Buffer;
  host: string;
  port: number;
  database: string;
  tlsMode: TlsMode;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
/** The generated password's characters: unreserved in URLs, so it needs no encoding anywhere. */
export const PASSWORD_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const PASSWORD_LENGTH = 40;

/**
 * Renders each key's template into bytes. In a template that looks like a URL (it has `://`)
 * every value is percent-encoded (a database name with `/` or `@` cannot break the URL); the
 * password never is (its alphabet is URL-safe), and it is copied byte by byte, never made a
 * string. Templates were validated at creation, so an unknown placeholder cannot occur.
 */
export function renderKeys(keys: Record<string, string>, f: CredentialFacts): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  try {
    for (const [key, template] of Object.entries(keys)) {
      const url = template.includes('://');
      const enc = (s: string) => (url ? encodeURIComponent(s) : s);
      const parts: Buffer[] = [];
      let last = 0;
      for (const m of template.matchAll(PLACEHOLDER)) {
        const name = m[1] ?? '';
        parts.push(Buffer.from(template.slice(last, m.index), 'utf8'));
        last = m.index + m[0].length;
        switch (name) {
          case 'password':
            parts.push(f.password);
            break;
          case 'username':
            parts.push(Buffer.from(enc(f.username)));
            break;
          case 'host':
            parts.push(Buffer.from(url && f.host.includes(':') ? `[${f.host}]` : f.host));
            break;
          case 'port':
            parts.push(Buffer.from(String(f.port)));
            break;
          case 'database':
            parts.push(Buffer.from(enc(f.database)));
            break;
          case 'sslmode':
            parts.push(Buffer.from(f.tlsMode));
            break;
          default:
            throw new Error(`unknown placeholder in the template of key ${key}`);
        }
      }
      parts.push(Buffer.from(template.slice(last), 'utf8'));
      out.set(key, Buffer.concat(parts));
    }
    return out;
  } catch (err) {
    for (const v of out.values()) v.fill(0);
    throw err;
  }
}
