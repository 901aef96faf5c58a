import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { describe, expect, it } from '@jest/globals';
import { kubeconfigAccess } from './kube-client.js';

describe('kubeconfigAccess', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sigil-kubeconfig-'));
  const write = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };

  it('takes the current context: server, inline CA, token', () => {
    const file = write(
      'a.yaml',
      `apiVersion: v1
kind: Config
current-context: b
contexts:
- name: a
  context: { cluster: one, user: u1 }
- name: b
  context: { cluster: two, user: u2 }
clusters:
- name: one
  cluster: { server: https://one.example:6443 }
- name: two
  cluster: { server: https://two.example:6443/, certificate-authority-data: ${Buffer.from('CA').toString('base64')} }
users:
- name: u1
  user: { token: wrong }
- name: u2
  user: { token: right }
`,
    );
    const a = kubeconfigAccess(file);
    expect(a.server).toBe('https://two.example:6443');
    expect(a.ca?.toString()).toBe('CA');
    expect(a.token?.()).toBe('right');
  });

  it('reads relative certificate files and client certificates', () => {
    write('ca.crt', 'CA-FILE');
    write('client.crt', 'CERT');
    write('client.key', 'KEY');
    const file = write(
      'b.yaml',
      `current-context: x
contexts: [{ name: x, context: { cluster: c, user: u } }]
clusters: [{ name: c, cluster: { server: 'https://10.0.0.1', certificate-authority: ca.crt } }]
users: [{ name: u, user: { client-certificate: client.crt, client-key: client.key } }]
`,
    );
    const a = kubeconfigAccess(file);
    expect([a.ca?.toString(), a.cert?.toString(), a.key?.toString(), a.token]).toEqual(['CA-FILE', 'CERT', 'KEY', undefined]);
  });

  it('without a CA, trusts what Node trusted by default: its bundled roots (the agent runs with --use-openssl-ca)', () => {
    const file = write(
      'd.yaml',
      `current-context: x
contexts: [{ name: x, context: { cluster: c, user: u } }]
clusters: [{ name: c, cluster: { server: 'https://public.example' } }]
users: [{ name: u, user: { token: t } }]
`,
    );
    expect(kubeconfigAccess(file).ca).toEqual(expect.arrayContaining([...rootCertificates]));
  });

  it('says what is missing when there is no usable context', () => {
    expect(() => kubeconfigAccess(write('c.yaml', 'current-context: nope\n'))).toThrow('no current context');
  });
});
