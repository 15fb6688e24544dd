{{/* The controller's workload. Each controller chart defines "<chart>.env": its own
environment entries (flags through their env fallbacks). */}}

{{- define "nbg.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "nbg.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "nbg.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "nbg.deployment" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection) }}
{{- fail (printf "%s: replicas > 1 needs leaderElection: true (only the leader may act)" .Chart.Name) }}
{{- end }}
{{- $pullSecrets := concat (.Values.imagePullSecrets | default list) (dig "imagePullSecrets" list (.Values.global | default dict)) }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "nbg.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "nbg.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicas }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "nbg.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "nbg.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "nbg.serviceAccountName" . }}
      {{- with $pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.podSecurityContext | nindent 8 }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: controller
          image: {{ include "nbg.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            - {name: NBG_NAMESPACES, value: {{ join "," .Values.watchNamespaces | quote }}}
            - {name: NBG_NAMESPACE_SELECTOR, value: {{ .Values.namespaceSelector | quote }}}
            - {name: NBG_LEADER_ELECTION, value: {{ .Values.leaderElection | quote }}}
            - {name: NBG_LEASE_DURATION, value: {{ .Values.leaseDuration | quote }}}
            - {name: NBG_HTTP_ADDR, value: {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}}
            - {name: NBG_LOG_FORMAT, value: {{ .Values.logFormat | quote }}}
            - {name: RUST_LOG, value: {{ .Values.logFilter | quote }}}
            {{- include (printf "%s.env" .Chart.Name) . | trim | nindent 12 }}
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: POD_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: http, containerPort: {{ .Values.metrics.port }}}
          # Alive while the process serves; ready once its caches are synced. A standby (leader
          # election) is ready too: it only waits for the Lease, so it takes over at once.
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- toYaml .Values.securityContext | nindent 12 }}
{{- end -}}

{{/* The /metrics, /healthz and /readyz port as a Service, for Prometheus. */}}
{{- define "nbg.metricsService" -}}
{{- if .Values.metrics.service.enabled }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "nbg.fullname" . }}-metrics
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "nbg.labels" . | nindent 4 }}
spec:
  selector:
    {{- include "nbg.selectorLabels" . | nindent 4 }}
  ports:
    - {name: http, port: {{ .Values.metrics.port }}, targetPort: http}
{{- end }}
{{- if .Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "nbg.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "nbg.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "nbg.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .Values.metrics.serviceMonitor.interval }}
{{- end }}
{{- end -}}

{{- define "nbg.podDisruptionBudget" -}}
{{- if .Values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "nbg.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "nbg.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "nbg.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The controller's Lease, created empty here so `helm uninstall` removes it (a controller
creates a missing one itself, but what it creates is not Helm's to delete). */}}
{{- define "nbg.lease" -}}
{{- if .Values.leaderElection }}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: {{ .Chart.Name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "nbg.labels" . | nindent 4 }}
{{- end }}
{{- end -}}

{{/* Everything a controller chart renders the same way. */}}
{{- define "nbg.controller" -}}
{{ include "nbg.serviceAccount" . }}
{{ include "nbg.rbac" . }}
{{ include "nbg.deployment" . }}
{{ include "nbg.metricsService" . }}
{{ include "nbg.podDisruptionBudget" . }}
{{ include "nbg.lease" . }}
{{- end -}}
