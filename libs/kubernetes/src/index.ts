// Kubernetes' own rules that every Sigil app applies the same way: names (DNS-1123, Secret keys,
// labels) and the label-selector shape.
export { dns1123LabelProblem, dns1123SubdomainProblem, labelKeyProblem, labelValueProblem, secretKeyProblem } from './names.js';
export type { LabelSelector } from './label-selector.js';
