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

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "wave-marker.env" -}}
- {name: NBG_MAX_CONCURRENT_RECONCILES, value: {{ .Values.maxConcurrentReconciles | quote }}}
{{- end -}}
