import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { KubeConfig } from '@kubernetes/client-node';
import type { HsmToken } from '../../apps/control-plane/src/config/sigil-config.js';
import type { KubeApiServerInfo } from './kube-apiserver.js';

/** What global-setup started; read by tests through the helpers below. */
export interface TestEnvironment {
  root: string;
  postgres: { adminUrl: string; templateUrl: string };
  redis: { url: string };
  hsm: { module: string; tokenLabel: string; pinFile: string; conf: string };
  kube: KubeApiServerInfo;
}

export const TEMPLATE_DATABASE = 'sigil_template';

let cached: TestEnvironment | undefined;

export function testEnv(): TestEnvironment {
  if (cached) return cached;
  const file = process.env.SIGIL_TEST_ENV_FILE;
  if (!file) throw new Error('SIGIL_TEST_ENV_FILE is unset: run tests through jest (global setup starts the services)');
  cached = JSON.parse(readFileSync(file, 'utf8')) as TestEnvironment;
  return cached;
}

/** A short unique suffix for names that must not collide between tests (databases, key prefixes, namespaces). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** A database of its own, cloned from the migrated template: isolated and ready in milliseconds. */
export async function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const env = testEnv();
  const name = uniqueName('t').replace(/-/g, '_');
  await withAdmin(env, (c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(name)} TEMPLATE ${TEMPLATE_DATABASE}`));
  const url = new URL(env.postgres.adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => withAdmin(env, (c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`)).then(() => undefined),
  };
}

async function withAdmin<T>(env: TestEnvironment, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: env.postgres.adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The shared SoftHSM token; tests keep apart by labelling their keys uniquely. */
export function testHsmToken(): HsmToken {
  const { module, tokenLabel, pinFile } = testEnv().hsm;
  return { module, tokenLabel, pin: { file: pinFile } };
}

export function testHsmPin(): string {
  return readFileSync(testEnv().hsm.pinFile, 'utf8').trim();
}

export async function kubeConfig(): Promise<KubeConfig> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(testEnv().kube.kubeconfig);
  return kc;
}

/** A fresh namespace (namespaces never finish deleting without a controller-manager). */
export async function createNamespace(prefix = 'test'): Promise<string> {
  const k8s = await import('@kubernetes/client-node');
  const core = (await kubeConfig()).makeApiClient(k8s.CoreV1Api);
  const name = uniqueName(prefix).toLowerCase().slice(0, 63);
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

/** Creates the service account if needed and returns a projected token for `audiences`. */
export async function mintServiceAccountToken(
  namespace: string,
  name: string,
  audiences: string[],
  expirationSeconds = 600,
): Promise<string> {
  const k8s = await import('@kubernetes/client-node');
  const core = (await kubeConfig()).makeApiClient(k8s.CoreV1Api);
  try {
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  const res = await core.createNamespacedServiceAccountToken({ namespace, name, body: { spec: { audiences, expirationSeconds } } });
  const token = res.status?.token;
  if (!token) throw new Error('TokenRequest returned no token');
  return token;
}

/** What a cluster admin does once: let anyone read the issuer's public keys (the Kubernetes-documented binding). */
export async function allowAnonymousIssuerDiscovery(): Promise<void> {
  const k8s = await import('@kubernetes/client-node');
  const rbac = (await kubeConfig()).makeApiClient(k8s.RbacAuthorizationV1Api);
  try {
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: 'sigil-test-issuer-discovery' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:service-account-issuer-discovery' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
      },
    });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
}
