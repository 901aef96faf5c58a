import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { repoRoot } from './repo-root.js';

/** The injector bundle and the exec wrapper, from the build (`make build`), as the agent image ships them. */
export const INJECTOR = path.join(repoRoot(), 'dist/apps/agent/sigil-inject.cjs');
export const SIGIL_EXEC = path.join(repoRoot(), 'dist/apps/agent/sigil-exec');
export const INJECT_AUDIENCE = 'sigil-inject';

export interface InjectorRun {
  code: number | null;
  stderr: string;
}

/** The injector as a real process (what the init container or sidecar runs). */
export function runInjector(
  command: 'init' | 'sidecar',
  env: Record<string, string>,
): { done: Promise<InjectorRun>; kill: () => void; stderr: () => string } {
  let stderr = '';
  const child = spawn(process.execPath, [INJECTOR, command], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<InjectorRun>((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  return { done, kill: () => child.kill('SIGTERM'), stderr: () => stderr };
}

/** A pod for the webhook: one container running as 1000, optionally annotated; `command` null: none. */
export function injectablePod(
  name: string,
  serviceAccount: string,
  annotations: Record<string, string> | undefined,
  command: string[] | null = ['/app/run'],
): k8s.V1Pod {
  return {
    metadata: { name, ...(annotations ? { annotations } : {}) },
    spec: {
      serviceAccountName: serviceAccount,
      securityContext: { runAsUser: 1000, runAsGroup: 1000 },
      containers: [{ name: 'app', image: 'example.com/app:1', ...(command ? { command } : {}) }],
    },
  };
}

/** A TokenRequest token for `serviceAccount`, bound to the pod, as the kubelet projects it. */
export async function podToken(core: k8s.CoreV1Api, pod: k8s.V1Pod, audiences = [INJECT_AUDIENCE]): Promise<string> {
  const res = await core.createNamespacedServiceAccountToken({
    namespace: pod.metadata!.namespace!,
    name: pod.spec!.serviceAccountName!,
    body: {
      spec: {
        audiences,
        expirationSeconds: 600,
        boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata!.name!, uid: pod.metadata!.uid! },
      },
    },
  });
  return res.status!.token!;
}

/** The injector's environment as the webhook wrote it into `container`, with its paths moved under `root`. */
export async function injectorEnv(pod: k8s.V1Pod, container: string, token: string, root: string): Promise<Record<string, string>> {
  const c = pod.spec!.initContainers!.find((x) => x.name === container)!;
  const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? '']));
  for (const d of ['files', 'env', 'bin']) await mkdir(path.join(root, d), { recursive: true });
  await writeFile(path.join(root, 'token'), token, { mode: 0o600 });
  return {
    ...env,
    SIGIL_INJECT_TOKEN_FILE: path.join(root, 'token'),
    SIGIL_INJECT_FILES_DIR: path.join(root, 'files'),
    ...(env.SIGIL_INJECT_ENV_FILE ? { SIGIL_INJECT_ENV_FILE: path.join(root, 'env', 'env') } : {}),
    ...(env.SIGIL_INJECT_EXEC_DIR ? { SIGIL_INJECT_EXEC_DIR: path.join(root, 'bin'), SIGIL_INJECT_EXEC_SOURCE: SIGIL_EXEC } : {}),
  };
}

/**
 * The webhook configuration the agent chart installs, pointing at a loopback URL (the harness'
 * API server runs on this host) and limited to `namespaces`: other suites share the API server.
 */
export async function createInjectionWebhook(
  admission: k8s.AdmissionregistrationV1Api,
  name: string,
  port: number,
  namespaces: string[],
): Promise<void> {
  await admission.createMutatingWebhookConfiguration({
    body: {
      metadata: { name },
      webhooks: [
        {
          name: 'inject.sigil.dev',
          clientConfig: { url: `https://127.0.0.1:${port}/mutate` },
          rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
          namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }] },
          matchConditions: [
            { name: 'annotated', expression: "has(object.metadata.annotations) && 'sigil.dev/inject' in object.metadata.annotations" },
          ],
          failurePolicy: 'Fail',
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          timeoutSeconds: 10,
        },
      ],
    },
  });
}
