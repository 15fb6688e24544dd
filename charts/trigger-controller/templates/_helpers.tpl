{{/* The rules the controller needs where NVJs live: read NVJs, write their status, record Events. */}}
{{- define "trigger-controller.nvjRules" -}}
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs]
  verbs: [get, list, watch]
- apiGroups: [mlops.mlops.dev]
  resources: [notebookvalidationjobs/status]
  verbs: [get, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* The kinds that may be targeted, comma-separated: allowedKinds, or every kind of target-kinds.json (without Argo CD's Application when global.argocd.enabled is false, without Flux's kinds unless global.flux.enabled). */}}
{{- define "trigger-controller.allowedKinds" -}}
{{- if .Values.allowedKinds }}
{{- join "," .Values.allowedKinds }}
{{- else }}
{{- $all := list }}
{{- $argocd := include "nbg.argocdEnabled" . }}
{{- $flux := include "nbg.fluxEnabled" . }}
{{- range (.Files.Get "target-kinds.json" | fromJson).kinds }}
{{- $application := and (eq .group "argoproj.io") (eq .kind "Application") }}
{{- $fluxKind := hasSuffix ".toolkit.fluxcd.io" .group }}
{{- if and (or $argocd (not $application)) (or $flux (not $fluxKind)) }}
{{- $all = append $all (printf "%s/%s" .group .kind) }}
{{- end }}
{{- end }}
{{- join "," $all }}
{{- end }}
{{- end -}}

{{/* The allowed kinds of Flux's (read, watched and patched where Flux keeps its objects). */}}
{{- define "trigger-controller.fluxRules" -}}
{{- $kinds := splitList "," (include "trigger-controller.allowedKinds" .) }}
{{- $byGroup := dict }}
{{- range (.Files.Get "target-kinds.json" | fromJson).kinds }}
{{- if and (hasSuffix ".toolkit.fluxcd.io" .group) (has (printf "%s/%s" .group .kind) $kinds) }}
{{- $_ := set $byGroup .group (append (get $byGroup .group | default list) .resource) }}
{{- end }}
{{- end }}
{{- range $group := keys $byGroup | sortAlpha }}
- apiGroups: [{{ $group }}]
  resources: [{{ join ", " (get $byGroup $group) }}]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}

{{/* The rules the controller needs where targets live: read, watch (to wait for rollouts) and patch exactly the allowed kinds; with served-model checks, reach predictors through the API server's service proxy; with eviction, list pods and evict them. */}}
{{- define "trigger-controller.targetRules" -}}
{{- $kinds := splitList "," (include "trigger-controller.allowedKinds" .) }}
{{- $byGroup := dict }}
{{- range (.Files.Get "target-kinds.json" | fromJson).kinds }}
{{- if has (printf "%s/%s" .group .kind) $kinds }}
{{- $_ := set $byGroup .group (append (get $byGroup .group | default list) .resource) }}
{{- end }}
{{- end }}
{{- range $group := keys $byGroup | sortAlpha }}
- apiGroups: [{{ $group }}]
  resources: [{{ join ", " (get $byGroup $group) }}]
  verbs: [get, list, watch, patch]
{{- end }}
{{- if and .Values.checkServedModels (has "serving.kserve.io/InferenceService" $kinds) }}
- apiGroups: [""]
  resources: [services/proxy]
  verbs: [get, create]
{{- end }}
{{- if .Values.allowEviction }}
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
{{- end }}
{{- end -}}

{{/* Its own environment entries (the library chart adds the common ones). */}}
{{- define "trigger-controller.env" -}}
- {name: NBG_DISABLE_CROSS_NAMESPACE, value: {{ .Values.disableCrossNamespace | quote }}}
- {name: NBG_ALLOWED_KINDS, value: {{ include "trigger-controller.allowedKinds" . | quote }}}
- {name: NBG_MAX_CONCURRENT_RECONCILES, value: {{ .Values.maxConcurrentReconciles | quote }}}
- {name: NBG_ROLLOUT_DEADLINE, value: {{ .Values.rolloutDeadline | quote }}}
{{- if include "nbg.argocdEnabled" . }}
{{ include "nbg.argocdEnv" . | trim }}
{{- else }}
{{- /* No Argo CD: its settings are not read (nothing is tracked by it). */}}
- {name: NBG_TRACKING_METHOD, value: "annotation"}
- {name: NBG_TRACKING_LABEL, value: "app.kubernetes.io/instance"}
- {name: NBG_INSTALLATION_ID, value: ""}
{{- end }}
{{- if include "nbg.fluxEnabled" . }}
{{ include "nbg.fluxEnv" . | trim }}
{{- end }}
{{- end -}}

{{/* Where NVJs live: the NVJ rules and the target rules. */}}
{{- define "trigger-controller.rules" -}}
{{ include "trigger-controller.nvjRules" . }}
{{ include "trigger-controller.targetRules" . | trim }}
{{- end -}}
