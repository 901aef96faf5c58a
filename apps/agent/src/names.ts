/** DNS-1123 label (cluster and namespace names). */
export function dns1123LabelProblem(v: string): string | undefined {
  if (v.length === 0 || v.length > 63) return 'must be 1-63 characters';
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v)) return 'must be lowercase letters, digits and dashes, starting and ending alphanumeric';
  return undefined;
}
