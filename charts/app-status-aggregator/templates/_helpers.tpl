{{/* Where NVJs live: read them. */}}
{{- define "app-status-aggregator.rules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch]
{{- end -}}

{{/* Where the owners live (Argo CD Applications, Flux Kustomizations: .group, .resource): read
them and patch their annotations; Events about them (a tracking mismatch). */}}
{{- define "app-status-aggregator.ownerRules" -}}
- apiGroups: [{{ .group }}]
  resources: [{{ .resource }}]
  verbs: [get, list, watch, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "app-status-aggregator.env" -}}
- {name: NBG_MAX_CONCURRENT_RECONCILES, value: {{ .Values.maxConcurrentReconciles | quote }}}
{{- $engines := list }}
{{- if include "nbg.argocdEnabled" . }}{{ $engines = append $engines "argocd" }}{{ end }}
{{- if include "nbg.fluxEnabled" . }}{{ $engines = append $engines "flux" }}{{ end }}
- {name: NBG_ENGINES, value: {{ join "," $engines | quote }}}
{{- if include "nbg.argocdEnabled" . }}
{{ include "nbg.argocdEnv" . | trim }}
{{- end }}
{{- if include "nbg.fluxEnabled" . }}
{{ include "nbg.fluxEnv" . | trim }}
{{- end }}
- {name: NBG_COALESCE, value: {{ .Values.coalesce | quote }}}
{{- end -}}
