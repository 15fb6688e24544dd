{{- define "nvj-validator.name" -}}
{{- default .Release.Name .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nvj-validator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "nvj-validator.labels" -}}
app.kubernetes.io/name: nvj-validator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: notebook-gitops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The rules the controller needs where NVJs live: read NVJs, write their status, run pods, record Events. */}}
{{- define "nvj-validator.rules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch]
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
