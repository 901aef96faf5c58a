{{- define "sigil-agent.name" -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "sigil-agent.labels" -}}
app.kubernetes.io/name: sigil-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- /* The agent's Service of the inject port and its MutatingWebhookConfiguration share this name (a Service name is at most 63). */ -}}
{{- define "sigil-agent.injectName" -}}{{ include "sigil-agent.name" . | trunc 56 | trimSuffix "-" }}-inject{{- end -}}
{{- define "sigil-agent.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "sigil-agent.selector" -}}
app.kubernetes.io/name: sigil-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "sigil-agent.secretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
{{- if .Values.restartWorkloads.enabled }}
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [list, patch]
{{- end }}
{{- end -}}
