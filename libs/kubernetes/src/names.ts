/**
 * Kubernetes naming rules (k8s.io/apimachinery/pkg/util/validation), so that whatever the API
 * accepts can be written into a cluster.
 */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function dns1123LabelProblem(v: string): string | undefined {
  if (v.length > 63) return 'must be at most 63 characters';
  if (!DNS1123_LABEL.test(v))
    return "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit";
  return undefined;
}

export function dns1123SubdomainProblem(v: string): string | undefined {
  if (v.length > 253) return 'must be at most 253 characters';
  if (!DNS1123_SUBDOMAIN.test(v)) return "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'";
  return undefined;
}

export function secretKeyProblem(k: string): string | undefined {
  if (k.length === 0 || k.length > 253) return 'must be 1-253 characters';
  // The kube-apiserver refuses '.', '..' and any key starting with '..' (the atomic-writer's
  // reserved names in Secret volumes), so a delivery of such a key would fail in every cluster.
  if (k === '.' || k.startsWith('..')) return "must not be '.' nor start with '..'";
  if (!SECRET_KEY.test(k)) return "may contain only letters, digits, '-', '_' and '.'";
  return undefined;
}

/** Label keys: optional DNS-1123 subdomain prefix + '/' + name (≤ 63). */
export function labelKeyProblem(k: string): string | undefined {
  const slash = k.lastIndexOf('/');
  const [prefix, name] = slash >= 0 ? [k.slice(0, slash), k.slice(slash + 1)] : [undefined, k];
  if (prefix !== undefined && dns1123SubdomainProblem(prefix)) return 'prefix must be a DNS-1123 subdomain';
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name))
    return "name must be 1-63 characters: letters, digits, '-', '_', '.', alphanumeric at both ends";
  return undefined;
}

export function labelValueProblem(v: string): string | undefined {
  if (v.length > 63 || !LABEL_VALUE.test(v))
    return "must be at most 63 characters: letters, digits, '-', '_', '.', alphanumeric at both ends";
  return undefined;
}
