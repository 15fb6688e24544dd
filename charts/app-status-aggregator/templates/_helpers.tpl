{{/* Where NVJs live: read them. */}}
{{- define "app-status-aggregator.rules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch]
{{- end -}}

{{/* Where Applications live: read them and patch their annotations; Events about them (a tracking mismatch). */}}
{{- define "app-status-aggregator.applicationRules" -}}
- apiGroups: [argoproj.io]
  resources: [applications]
  verbs: [get, list, watch, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "app-status-aggregator.env" -}}
- {name: NBG_MAX_CONCURRENT_RECONCILES, value: {{ .Values.maxConcurrentReconciles | quote }}}
{{ include "nbg.argocdEnv" . | trim }}
- {name: NBG_COALESCE, value: {{ .Values.coalesce | quote }}}
{{- end -}}
