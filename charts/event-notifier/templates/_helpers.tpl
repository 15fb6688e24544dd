{{- define "event-notifier.name" -}}
{{- default .Release.Name .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "event-notifier.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "event-notifier.labels" -}}
app.kubernetes.io/name: event-notifier
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: notebook-gitops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Where NVJs live: read them, record the notified run on them (patch), create their Events. */}}
{{- define "event-notifier.rules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
