{{- define "sigil-cp.name" -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- define "sigil-cp.labels" -}}
app.kubernetes.io/name: sigil-control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "sigil-cp.selector" -}}
app.kubernetes.io/name: sigil-control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
