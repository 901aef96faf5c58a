// The control plane's features take Kubernetes' naming rules from here; they live in
// libs/kubernetes, shared with the agent and the CLI.
export { dns1123LabelProblem, dns1123SubdomainProblem, labelKeyProblem, labelValueProblem, secretKeyProblem } from '@sigil/kubernetes';
