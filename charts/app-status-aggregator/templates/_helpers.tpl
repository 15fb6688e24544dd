{{- define "app-status-aggregator.name" -}}
{{- default .Release.Name .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "app-status-aggregator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "app-status-aggregator.labels" -}}
app.kubernetes.io/name: app-status-aggregator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: notebook-gitops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The namespaces whose Applications are written. */}}
{{- define "app-status-aggregator.applicationNamespaces" -}}
{{- if .Values.applicationNamespaces }}{{ join "," .Values.applicationNamespaces }}{{ else }}{{ .Values.argocdNamespace }}{{ end -}}
{{- end -}}

{{/* Where NVJs live: read them. */}}
{{- define "app-status-aggregator.nvjRules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch]
{{- end -}}

{{/* Where Applications live: read them and patch their annotations; Events about unreadable ones. */}}
{{- define "app-status-aggregator.applicationRules" -}}
- apiGroups: [argoproj.io]
  resources: [applications]
  verbs: [get, list, watch, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
