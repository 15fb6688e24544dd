{{/* Where NVJs live: read them, record the notified run on them (patch), create their Events. */}}
{{- define "event-notifier.rules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "event-notifier.env" -}}
- {name: NBG_MAX_CONCURRENT_RECONCILES, value: {{ .Values.maxConcurrentReconciles | quote }}}
- {name: NBG_NOTIFY_EARLIER_RUNS, value: {{ .Values.notifyEarlierRuns | quote }}}
- {name: NBG_FLUX_EVENTS_ADDR, value: {{ .Values.fluxEventsAddr | quote }}}
{{- end -}}
