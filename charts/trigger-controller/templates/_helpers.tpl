{{- define "trigger-controller.name" -}}
{{- default .Release.Name .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trigger-controller.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "trigger-controller.labels" -}}
app.kubernetes.io/name: trigger-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: notebook-gitops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

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

{{/* The rules the controller needs where targets live: read, watch (to wait for rollouts) and patch exactly the allowed kinds; with eviction, list pods and evict them. */}}
{{- define "trigger-controller.targetRules" -}}
{{- $kinds := .Values.allowedKinds }}
{{- $apps := list }}
{{- range $pair := list (list "apps/Deployment" "deployments") (list "apps/StatefulSet" "statefulsets") (list "apps/DaemonSet" "daemonsets") }}
{{- if has (index $pair 0) $kinds }}{{ $apps = append $apps (index $pair 1) }}{{ end }}
{{- end }}
{{- $argo := list }}
{{- range $pair := list (list "argoproj.io/Rollout" "rollouts") (list "argoproj.io/Application" "applications") }}
{{- if has (index $pair 0) $kinds }}{{ $argo = append $argo (index $pair 1) }}{{ end }}
{{- end }}
{{- if $apps }}
- apiGroups: [apps]
  resources: [{{ join ", " $apps }}]
  verbs: [get, list, watch, patch]
{{- end }}
{{- if has "serving.kserve.io/InferenceService" $kinds }}
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, patch]
{{- end }}
{{- if $argo }}
- apiGroups: [argoproj.io]
  resources: [{{ join ", " $argo }}]
  verbs: [get, list, watch, patch]
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

{{- define "trigger-controller.rules" -}}
{{ include "trigger-controller.nvjRules" . }}
{{ include "trigger-controller.targetRules" . | trim }}
{{- end -}}
