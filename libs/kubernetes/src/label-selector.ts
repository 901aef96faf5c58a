/**
 * A Kubernetes label selector (metav1.LabelSelector): every matchLabels pair and every
 * expression must hold. The control plane validates and matches it; the CLI builds it from
 * kubectl-style text.
 */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}
