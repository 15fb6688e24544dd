{{- define "wave-marker.name" -}}
{{- default .Release.Name .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wave-marker.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "wave-marker.labels" -}}
app.kubernetes.io/name: wave-marker
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: notebook-gitops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Where NVJs live: read them, patch their annotations (the marks), write the WavesValid condition, record Events. */}}
{{- define "wave-marker.rules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs/status]
  verbs: [get, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
