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

{{/* The data-plane address kvwarden serves on (--listen): the socket, or kvwarden.listen. */}}
{{- define "kvwarden.listen" -}}
{{- if .Values.kvwarden.listen }}
{{- .Values.kvwarden.listen }}
{{- else }}
{{- printf "unix:%s/%s" .Values.kvwarden.socketDir .Values.kvwarden.socketName }}
{{- end }}
{{- end }}

{{/* The port of a TCP data plane: what follows the last colon of kvwarden.listen. */}}
{{- define "kvwarden.listenPort" -}}
{{- splitList ":" .Values.kvwarden.listen | last }}
{{- end }}

{{/*
The address the backend dials (KVWARDEN_ADDRESS): the socket, or for a TCP data plane the port on
localhost, which is also the name a TLS certificate for the in-pod backend has to carry.
*/}}
{{- define "kvwarden.address" -}}
{{- if .Values.kvwarden.listen }}
{{- printf "localhost:%s" (include "kvwarden.listenPort" .) }}
{{- else }}
{{- include "kvwarden.listen" . }}
{{- end }}
{{- end }}

{{/* Where the auth and TLS Secrets are mounted, read-only, in the kvwarden container. */}}
{{- define "kvwarden.authDir" -}}
/etc/kvwarden/auth
{{- end }}
{{- define "kvwarden.tlsDir" -}}
/etc/kvwarden/tls
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
  volumes:
    {{- include "kvwarden.volumes" . | nindent 4 }}
and mount the volume kvwarden-socket in your container at kvwarden.socketDir. It checks the values
that the schema cannot (a chart of your own may not carry values.schema.json).
*/}}
{{- define "kvwarden.sidecarContainer" -}}
{{- if and .Values.tls.enabled (not .Values.kvwarden.listen) }}
{{- fail "tls.enabled needs kvwarden.listen (host:port): kvwarden serves no TLS on a Unix socket" }}
{{- end -}}
name: kvwarden
image: {{ include "kvwarden.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
restartPolicy: Always
args:
  - serve
  - --listen
  - {{ include "kvwarden.listen" . | quote }}
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
  - --max-batch-size
  - {{ .Values.kvwarden.maxBatchSize | int | quote }}
  {{- with .Values.kvwarden.maxQueue }}
  - --max-queue
  - {{ . | int | quote }}
  {{- end }}
  {{- with .Values.kvwarden.maxPromptBytes }}
  - --max-prompt-bytes
  - {{ . | quote }}
  {{- end }}
  {{- with .Values.kvwarden.socketMode }}
  - --socket-mode
  - {{ . | quote }}
  {{- end }}
  {{- if .Values.auth.enabled }}
  - --auth-tokens
  - {{ printf "%s/%s" (include "kvwarden.authDir" .) .Values.auth.tokensKey | quote }}
  {{- end }}
  {{- if .Values.tls.enabled }}
  - --tls-cert
  - {{ include "kvwarden.tlsDir" . }}/tls.crt
  - --tls-key
  - {{ include "kvwarden.tlsDir" . }}/tls.key
  {{- if .Values.tls.clientCA }}
  - --tls-client-ca
  - {{ include "kvwarden.tlsDir" . }}/ca.crt
  {{- end }}
  {{- end }}
  {{- /* Quotas: int, since values numbers are floats and a large one would print as 1e+06. */}}
  {{- with .Values.tenancy.kvBudget }}
  - --tenant-kv-budget
  - {{ . | quote }}
  {{- end }}
  {{- with .Values.tenancy.maxSequences }}
  - --tenant-max-sequences
  - {{ . | int | quote }}
  {{- end }}
  {{- with .Values.tenancy.maxRequestTokens }}
  - --max-request-tokens
  - {{ . | int | quote }}
  {{- end }}
  {{- if .Values.kvStore.enabled }}
  {{- /* The URL itself comes from KVWARDEN_KV_STORE (below): a password never sits in the args. */}}
  - --kv-store-prefix
  - {{ .Values.kvStore.prefix | quote }}
  - --kv-store-lease
  - {{ .Values.kvStore.leaseSeconds | int | quote }}
  - --replica-name
  - $(POD_NAME)
  {{- with .Values.kvStore.offloadIdleAfterSeconds }}
  - --offload-idle-after
  - {{ . | int | quote }}
  {{- end }}
  {{- end }}
  {{- range .Values.kvwarden.extraArgs }}
  - {{ . | quote }}
  {{- end }}
ports:
  - name: grpc-health
    containerPort: {{ .Values.kvwarden.healthPort }}
  - name: metrics
    containerPort: {{ .Values.kvwarden.metricsPort }}
  {{- if .Values.kvwarden.listen }}
  - name: grpc
    containerPort: {{ include "kvwarden.listenPort" . }}
  {{- end }}
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
  {{- if .Values.kvStore.enabled }}
  # --kv-store, from a Secret key: the URL may carry the store's password.
  - name: KVWARDEN_KV_STORE
    valueFrom:
      secretKeyRef:
        name: {{ required "kvStore.enabled needs kvStore.secretName: an existing Secret holding the store URL" .Values.kvStore.secretName }}
        key: {{ .Values.kvStore.urlKey }}
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
  {{- if .Values.auth.enabled }}
  - name: kvwarden-auth
    mountPath: {{ include "kvwarden.authDir" . }}
    readOnly: true
  {{- end }}
  {{- if .Values.tls.enabled }}
  - name: kvwarden-tls
    mountPath: {{ include "kvwarden.tlsDir" . }}
    readOnly: true
  {{- end }}
{{- end }}

{{/*
The pod's volumes for the sidecar: the socket's in-memory emptyDir, and the auth and TLS Secrets
when those are on. The Secrets are whole-directory mounts, not subPath ones, so that kubelet keeps
the files current when a Secret changes (kvwarden re-reads the tokens on SIGHUP). Mode 0440:
kubelet gives the files the pod's fsGroup, which kvwarden's user is in.
*/}}
{{- define "kvwarden.volumes" -}}
- name: kvwarden-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- if .Values.auth.enabled }}
- name: kvwarden-auth
  secret:
    secretName: {{ required "auth.enabled needs auth.secretName: an existing Secret with the tokens file" .Values.auth.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .Values.auth.tokensKey }}
        path: {{ .Values.auth.tokensKey }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: kvwarden-tls
  secret:
    secretName: {{ required "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret" .Values.tls.secretName }}
    defaultMode: 0440
    # Listed keys: a Secret without one (ca.crt, say) keeps the pod from starting, with an event
    # that names the key, instead of kvwarden failing later on a missing file.
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      {{- if .Values.tls.clientCA }}
      - key: ca.crt
        path: ca.crt
      {{- end }}
{{- end }}
{{- end }}
