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

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "nvj-validator.env" -}}
- {name: NBG_MAX_RETRIES, value: {{ .Values.maxRetries | quote }}}
- {name: NBG_RETRY_BACKOFF, value: {{ .Values.retryBackoff | quote }}}
- {name: NBG_NOTEBOOK_PYTHON, value: {{ .Values.notebookPython | quote }}}
- {name: NBG_RUNNER_IMAGE, value: {{ default (include "nbg.image" .) .Values.runnerImage | quote }}}
- {name: NBG_RUNNER_PATH, value: {{ .Values.runnerPath | quote }}}
{{- end -}}
