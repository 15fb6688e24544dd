{{/* Names and labels. A controller chart is named after its binary (.Chart.Name). */}}

{{/* <release>-<chart>, or the release name alone when it already contains the chart's name, so
`helm install trigger-controller charts/trigger-controller` names things trigger-controller and
the umbrella's five subcharts never share a name. fullnameOverride wins. */}}
{{- define "nbg.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nbg.serviceAccountName" -}}
{{- default (include "nbg.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "nbg.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nbg.labels" -}}
{{ include "nbg.selectorLabels" . }}
app.kubernetes.io/part-of: notebook-gitops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* registry/repository:tag, or @digest when a digest is given. global.imageRegistry replaces
the registry, so a mirror is one value for every controller. */}}
{{- define "nbg.image" -}}
{{- $registry := dig "imageRegistry" "" (.Values.global | default dict) | default .Values.image.registry -}}
{{- $repository := ternary .Values.image.repository (printf "%s/%s" $registry .Values.image.repository) (empty $registry) -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
