/** The few Kubernetes object shapes the agent reads and writes. */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface Secret {
  apiVersion?: 'v1';
  kind?: 'Secret';
  metadata?: ObjectMeta;
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface PodSpec {
  containers?: Array<{
    envFrom?: Array<{ secretRef?: { name?: string } }>;
    env?: Array<{ valueFrom?: { secretKeyRef?: { name?: string } } }>;
  }>;
  initContainers?: PodSpec['containers'];
  volumes?: Array<{ secret?: { secretName?: string }; projected?: { sources?: Array<{ secret?: { name?: string } }> } }>;
}

export interface Workload {
  metadata?: ObjectMeta;
  spec?: { template?: { metadata?: ObjectMeta; spec?: PodSpec } };
}

export interface List<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}
