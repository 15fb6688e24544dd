{{/* Argo CD's settings, shared by every chart: global.argocd (the umbrella sets them once;
a chart installed alone takes its own values' global.argocd). */}}

{{- define "nbg.argocdValues" -}}
{{- toJson (dig "argocd" dict (.Values.global | default dict)) -}}
{{- end -}}

{{/* Argo CD's namespace: argocd-cm is read there; Applications named without a namespace live there. */}}
{{- define "nbg.argocdNamespace" -}}
{{- (include "nbg.argocdValues" . | fromJson).namespace | default "argocd" -}}
{{- end -}}

{{/* The namespaces whose Applications are read, comma-separated: applicationNamespaces, else Argo CD's. */}}
{{- define "nbg.applicationNamespaces" -}}
{{- $apps := (include "nbg.argocdValues" . | fromJson).applicationNamespaces | default list -}}
{{- if $apps }}{{ join "," $apps }}{{ else }}{{ include "nbg.argocdNamespace" . }}{{ end -}}
{{- end -}}

{{/* The environment entries of a controller that reads Argo CD's objects. */}}
{{- define "nbg.argocdEnv" -}}
{{- $a := include "nbg.argocdValues" . | fromJson }}
- {name: NBG_ARGOCD_NAMESPACE, value: {{ include "nbg.argocdNamespace" . | quote }}}
- {name: NBG_APPLICATION_NAMESPACES, value: {{ include "nbg.applicationNamespaces" . | quote }}}
{{- with $a.trackingMethod }}
- {name: NBG_TRACKING_METHOD, value: {{ . | quote }}}
{{- end }}
{{- with $a.trackingLabel }}
- {name: NBG_TRACKING_LABEL, value: {{ . | quote }}}
{{- end }}
{{- if not (kindIs "invalid" $a.installationID) }}
- {name: NBG_INSTALLATION_ID, value: {{ $a.installationID | quote }}}
{{- end }}
{{- end -}}

{{/* What a controller that reads Argo CD's objects is granted there: argocd-cm (read and
watched, for Argo CD's tracking settings) in Argo CD's namespace, and .rules on Applications in
each application namespace (["*"]: cluster-wide). Against a cluster (not `helm template`), an
Argo CD namespace that does not exist fails the install with the value to set.
Arguments: dict "ctx" $ "rules" <rules for Applications>. */}}
{{- define "nbg.argocdGrants" -}}
{{- $ctx := .ctx -}}
{{- $ns := include "nbg.argocdNamespace" $ctx -}}
{{- if and (lookup "v1" "Namespace" "" "kube-system") (not (lookup "v1" "Namespace" "" $ns)) }}
{{- fail (printf "%s: Argo CD's namespace %q does not exist in this cluster. Set global.argocd.namespace to the namespace Argo CD runs in (openshift-gitops on OpenShift GitOps), or install without Argo CD: --set global.argocd.enabled=false,app-status-aggregator.enabled=false (or global.flux.enabled=true where Flux deploys)" $ctx.Chart.Name $ns) }}
{{- end }}
{{- $name := include "nbg.fullname" $ctx }}
{{ include "nbg.grant" (dict "ctx" $ctx "name" (printf "%s-argocd-settings" $name) "namespace" $ns "rules" (printf "- apiGroups: [\"\"]\n  resources: [configmaps]\n  resourceNames: [argocd-cm]\n  verbs: [get, list, watch]")) }}
{{- $apps := splitList "," (include "nbg.applicationNamespaces" $ctx) }}
{{- if has "*" $apps }}
{{ include "nbg.grant" (dict "ctx" $ctx "name" (printf "%s-applications" $name) "namespace" "" "rules" .rules) }}
{{- else }}
{{- range $apps }}
{{ include "nbg.grant" (dict "ctx" $ctx "name" (printf "%s-applications" $name) "namespace" . "rules" $.rules) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Whether the Argo CD integration is on (global.argocd.enabled, default true). */}}
{{- define "nbg.argocdEnabled" -}}
{{- $a := include "nbg.argocdValues" . | fromJson -}}
{{- if or (kindIs "invalid" $a.enabled) $a.enabled }}true{{ end -}}
{{- end -}}
