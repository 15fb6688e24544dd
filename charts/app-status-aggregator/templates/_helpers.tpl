{{/* The namespaces whose Applications are written. */}}
{{- define "app-status-aggregator.applicationNamespaces" -}}
{{- if .Values.applicationNamespaces }}{{ join "," .Values.applicationNamespaces }}{{ else }}{{ .Values.argocdNamespace }}{{ end -}}
{{- end -}}

{{/* Where NVJs live: read them. */}}
{{- define "app-status-aggregator.rules" -}}
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

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "app-status-aggregator.env" -}}
- {name: NBG_MAX_CONCURRENT_RECONCILES, value: {{ .Values.maxConcurrentReconciles | quote }}}
- {name: NBG_ARGOCD_NAMESPACE, value: {{ .Values.argocdNamespace | quote }}}
- {name: NBG_APPLICATION_NAMESPACES, value: {{ include "app-status-aggregator.applicationNamespaces" . | quote }}}
- {name: NBG_TRACKING_METHOD, value: {{ .Values.trackingMethod | quote }}}
- {name: NBG_TRACKING_LABEL, value: {{ .Values.trackingLabel | quote }}}
- {name: NBG_COALESCE, value: {{ .Values.coalesce | quote }}}
{{- end -}}
