{{/* The chart name, or nameOverride. */}}
{{- define "kvwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name for the objects this chart creates. */}}
{{- define "kvwarden.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* name-version, as the helm.sh/chart label wants it. */}}
{{- define "kvwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels Helm's best practices recommend, on every object. */}}
{{- define "kvwarden.labels" -}}
helm.sh/chart: {{ include "kvwarden.chart" . }}
{{ include "kvwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: kv-sidecar
{{- end }}

{{/* The labels selectors match on: stable across upgrades. */}}
{{- define "kvwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image reference, tag defaulting to the chart's appVersion. */}}
{{- define "kvwarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The data-plane address, for kvwarden's --listen and the backend's KVWARDEN_ADDRESS. */}}
{{- define "kvwarden.address" -}}
{{- printf "unix:%s/%s" .Values.kvwarden.socketDir .Values.kvwarden.socketName }}
{{- end }}

{{/* The volume holding the socket, shared by both containers. */}}
{{- define "kvwarden.socketVolumeMount" -}}
name: kvwarden-socket
mountPath: {{ .Values.kvwarden.socketDir }}
{{- end }}

{{/*
kvwarden as a native sidecar: one entry of a pod's initContainers (restartPolicy: Always).
Use it in your own workload with the root context:
  initContainers:
    - {{- include "kvwarden.sidecarContainer" . | nindent 6 }}
and mount a volume named kvwarden-socket (an emptyDir) in your container at kvwarden.socketDir.
*/}}
{{- define "kvwarden.sidecarContainer" -}}
name: kvwarden
image: {{ include "kvwarden.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
restartPolicy: Always
args:
  - serve
  - --listen
  - {{ include "kvwarden.address" . }}
  - --health-listen
  - {{ printf "0.0.0.0:%d" (int .Values.kvwarden.healthPort) | quote }}
  - --metrics-listen
  - {{ printf "0.0.0.0:%d" (int .Values.kvwarden.metricsPort) | quote }}
  - --kv-budget
  - {{ .Values.kvwarden.kvBudget | quote }}
  - --shutdown-grace
  - {{ .Values.kvwarden.shutdownGraceSeconds | quote }}
  - --execution-provider
  - {{ .Values.kvwarden.executionProvider }}
  {{- range .Values.kvwarden.extraArgs }}
  - {{ . | quote }}
  {{- end }}
ports:
  - name: grpc-health
    containerPort: {{ .Values.kvwarden.healthPort }}
  - name: metrics
    containerPort: {{ .Values.kvwarden.metricsPort }}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  {{- if .Values.tracing.enabled }}
  - name: OTEL_SERVICE_NAME
    value: {{ .Values.tracing.serviceName | quote }}
  - name: OTEL_EXPORTER_OTLP_ENDPOINT
    value: {{ .Values.tracing.otlpEndpoint | quote }}
  - name: OTEL_EXPORTER_OTLP_PROTOCOL
    value: {{ .Values.tracing.otlpProtocol | quote }}
  - name: OTEL_TRACES_SAMPLER
    value: {{ .Values.tracing.sampler | quote }}
  - name: OTEL_RESOURCE_ATTRIBUTES
    value: k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)
  {{- end }}
  {{- with .Values.kvwarden.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- /* gRPC probes take numeric ports only, and connect to the pod IP. */}}
startupProbe:
  grpc:
    port: {{ .Values.kvwarden.healthPort }}
    service: kvwarden.v1.KvCache
  periodSeconds: {{ .Values.kvwarden.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.kvwarden.probes.startup.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ .Values.kvwarden.healthPort }}
    service: kvwarden.v1.KvCache
  periodSeconds: {{ .Values.kvwarden.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.kvwarden.probes.readiness.failureThreshold }}
livenessProbe:
  grpc:
    port: {{ .Values.kvwarden.healthPort }}
    service: liveness
  periodSeconds: {{ .Values.kvwarden.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.kvwarden.probes.liveness.failureThreshold }}
resources:
  {{- toYaml .Values.kvwarden.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - {{- include "kvwarden.socketVolumeMount" . | nindent 4 }}
{{- end }}
