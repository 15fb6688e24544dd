{{/* RBAC. Each controller chart defines "<chart>.rules": what it needs where it acts. */}}

{{/* A Role and RoleBinding in .namespace, or a ClusterRole and ClusterRoleBinding when
.namespace is empty, granting .rules (YAML text) to the chart's ServiceAccount.
Arguments: dict "ctx" $ "name" <object name> "namespace" <namespace or ""> "rules" <rules>. */}}
{{- define "nbg.grant" -}}
{{- $ctx := .ctx -}}
{{- $sa := include "nbg.serviceAccountName" $ctx -}}
{{- $cluster := empty .namespace -}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ ternary "ClusterRole" "Role" $cluster }}
metadata:
  name: {{ .name }}
  {{- if not $cluster }}
  namespace: {{ .namespace }}
  {{- end }}
  labels:
    {{- include "nbg.labels" $ctx | nindent 4 }}
rules:
  {{- .rules | trim | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ ternary "ClusterRoleBinding" "RoleBinding" $cluster }}
metadata:
  name: {{ .name }}
  {{- if not $cluster }}
  namespace: {{ .namespace }}
  {{- end }}
  labels:
    {{- include "nbg.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ ternary "ClusterRole" "Role" $cluster }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ $sa }}
    namespace: {{ $ctx.Release.Namespace }}
{{- end -}}

{{/* The controller's own rights: "<chart>.rules" cluster-wide, or in each of watchNamespaces
only; list/watch on namespaces for namespaceSelector; its Lease for leader election. */}}
{{- define "nbg.rbac" -}}
{{- $name := include "nbg.fullname" . -}}
{{- $rules := include (printf "%s.rules" .Chart.Name) . -}}
{{- if .Values.watchNamespaces }}
{{- range .Values.watchNamespaces }}
{{ include "nbg.grant" (dict "ctx" $ "name" $name "namespace" . "rules" $rules) }}
{{- end }}
{{- else }}
{{ include "nbg.grant" (dict "ctx" . "name" $name "namespace" "" "rules" $rules) }}
{{- end }}
{{- if .Values.namespaceSelector }}
{{ include "nbg.grant" (dict "ctx" . "name" (printf "%s-namespaces" $name) "namespace" "" "rules" "- apiGroups: [\"\"]\n  resources: [namespaces]\n  verbs: [list, watch]") }}
{{- end }}
{{- if .Values.leaderElection }}
{{ include "nbg.grant" (dict "ctx" . "name" (printf "%s-leader-election" $name) "namespace" .Release.Namespace "rules" "- apiGroups: [coordination.k8s.io]\n  resources: [leases]\n  verbs: [get, create, update]") }}
{{- end }}
{{- end -}}
