{{/* Flux's settings, shared by every chart: global.flux (the umbrella sets them once; a chart
installed alone takes its own values' global.flux). */}}

{{- define "nbg.fluxValues" -}}
{{- toJson (dig "flux" dict (.Values.global | default dict)) -}}
{{- end -}}

{{/* Whether the Flux integration is on (global.flux.enabled, default false). */}}
{{- define "nbg.fluxEnabled" -}}
{{- if (include "nbg.fluxValues" . | fromJson).enabled }}true{{ end -}}
{{- end -}}

{{/* The namespaces where Flux keeps its objects, comma-separated: global.flux.namespaces,
default flux-system; "*": every namespace. */}}
{{- define "nbg.fluxNamespaces" -}}
{{- join "," ((include "nbg.fluxValues" . | fromJson).namespaces | default (list "flux-system")) -}}
{{- end -}}

{{/* The environment entries of a controller that reads Flux's objects. */}}
{{- define "nbg.fluxEnv" -}}
- {name: NBG_FLUX_NAMESPACES, value: {{ include "nbg.fluxNamespaces" . | quote }}}
{{- end -}}

{{/* .rules in each namespace where Flux keeps its objects (["*"]: cluster-wide).
Arguments: dict "ctx" $ "rules" <rules for Flux's objects>. */}}
{{- define "nbg.fluxGrants" -}}
{{- $ctx := .ctx -}}
{{- $name := include "nbg.fullname" $ctx }}
{{- $namespaces := splitList "," (include "nbg.fluxNamespaces" $ctx) }}
{{- if has "*" $namespaces }}
{{ include "nbg.grant" (dict "ctx" $ctx "name" (printf "%s-flux" $name) "namespace" "" "rules" .rules) }}
{{- else }}
{{- range $namespaces }}
{{ include "nbg.grant" (dict "ctx" $ctx "name" (printf "%s-flux" $name) "namespace" . "rules" $.rules) }}
{{- end }}
{{- end }}
{{- end -}}
