{{/* Release-wide name: the release name when it already says "photos", else <release>-photos. */}}
{{- define "photos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "photos.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object of the release. */}}
{{- define "photos.labels" -}}
helm.sh/chart: {{ include "photos.chart" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: photos
{{- end -}}

{{/* Selects every pod of the release (NetworkPolicies). */}}
{{- define "photos.releaseSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selects one component's pods. Args: dict root, name. */}}
{{- define "photos.selector" -}}
{{ include "photos.releaseSelector" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "photos.componentLabels" -}}
{{ include "photos.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* <fullname>-<component>. Args: dict root, name. */}}
{{- define "photos.componentName" -}}
{{- printf "%s-%s" (include "photos.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "photos.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "photos.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "photos.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .binary (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* A service's values with serviceDefaults filled in. Args: dict root, name. Returns YAML. */}}
{{- define "photos.component" -}}
{{- $s := index .root.Values.services .name -}}
{{- toYaml (merge (deepCopy $s) (deepCopy .root.Values.serviceDefaults)) -}}
{{- end -}}

{{/* PHOTOS__<SVC>__ADDRESS for each upstream, via the headless Service so the runtime's dns://
     resolver balances over every ready pod. Args: dict root, upstreams. */}}
{{- define "photos.upstreamEnv" -}}
{{- range $up := .upstreams }}
{{- $svc := index $.root.Values.services $up }}
PHOTOS__{{ $up | replace "-" "_" | upper }}__ADDRESS: {{ printf "dns://%s-headless:%d" (include "photos.componentName" (dict "root" $.root "name" $up)) (int $svc.grpcPort) | quote }}
{{- end }}
{{- end -}}

{{- define "photos.telemetryEnv" -}}
PHOTOS__TELEMETRY__LOG_FORMAT: {{ .Values.telemetry.logFormat | quote }}
PHOTOS__TELEMETRY__LOG_FILTER: {{ .Values.telemetry.logFilter | quote }}
PHOTOS__TELEMETRY__OTLP_ENDPOINT: {{ .Values.telemetry.otlpEndpoint | quote }}
PHOTOS__TELEMETRY__SAMPLE_RATIO: {{ .Values.telemetry.sampleRatio | quote }}
{{- end -}}

{{/* Secret-backed env entries. Args: dict root, secretEnv (map env -> secret key). */}}
{{- define "photos.secretEnv" -}}
{{- range $env, $key := .secretEnv }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "photos.secretName" $.root }}
      key: {{ $key }}
{{- end }}
{{- end -}}

{{- define "photos.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A gRPC service's ConfigMap data. Args: dict root, name, c (merged values). */}}
{{- define "photos.serviceConfig" -}}
{{- $v := .root.Values -}}
PHOTOS__SERVER__HOST: "0.0.0.0"
PHOTOS__SERVER__GRPC_PORT: {{ .c.grpcPort | quote }}
PHOTOS__SERVER__ADMIN_PORT: {{ .c.adminPort | quote }}
PHOTOS__SERVER__DRAIN_DELAY_MS: {{ $v.server.drainDelayMs | quote }}
PHOTOS__SERVER__DRAIN_GRACE_MS: {{ $v.server.drainGraceMs | quote }}
PHOTOS__SERVER__REQUEST_TIMEOUT_MS: {{ $v.server.requestTimeoutMs | quote }}
PHOTOS__SERVER__CONCURRENCY_LIMIT: {{ $v.server.concurrencyLimit | quote }}
{{ include "photos.telemetryEnv" .root }}
{{- include "photos.upstreamEnv" (dict "root" .root "upstreams" .c.upstreams) }}
{{- $metrics := include "photos.component" (dict "root" .root "name" "metrics") | fromYaml }}
{{- if and $metrics.enabled (ne .name "metrics") }}
{{- /* Every service reports its calls to the metrics service (the performance report). */}}
PHOTOS__SERVER__METRICS_SERVICE: {{ printf "dns://%s-headless:%d" (include "photos.componentName" (dict "root" .root "name" "metrics")) (int $metrics.grpcPort) | quote }}
{{- end }}
{{- if eq .name "catalog" }}
PHOTOS__DATABASE__MAX_CONNECTIONS: {{ $v.postgres.maxConnections | quote }}
{{- /* Without Redis, replicas could not see each other's writes in per-pod caches: no cache. */}}
PHOTOS__CACHE__BACKEND: {{ get (dict "none" "none" "standalone" "redis" "cluster" "cluster") $v.redis.mode | quote }}
{{- end }}
{{- if eq .name "storage" }}
PHOTOS__S3__ENDPOINT: {{ $v.s3.endpoint | quote }}
PHOTOS__S3__REGION: {{ $v.s3.region | quote }}
PHOTOS__S3__BUCKET: {{ $v.s3.bucket | quote }}
PHOTOS__S3__FORCE_PATH_STYLE: {{ $v.s3.forcePathStyle | quote }}
PHOTOS__S3__CREATE_BUCKET: {{ $v.s3.createBucket | quote }}
PHOTOS__MULTIPART_SWEEP__INTERVAL_SECONDS: {{ $v.s3.multipartSweep.intervalSeconds | quote }}
PHOTOS__MULTIPART_SWEEP__OLDER_THAN_SECONDS: {{ $v.s3.multipartSweep.olderThanSeconds | quote }}
PHOTOS__URLS__CDN_DOMAIN: {{ $v.cloudfront.domain | quote }}
{{- end }}
{{- range $k, $val := .c.env }}
{{ $k }}: {{ $val | quote }}
{{- end }}
{{- end -}}

{{- define "photos.gatewayConfig" -}}
PHOTOS__HTTP__HOST: "0.0.0.0"
PHOTOS__HTTP__PORT: {{ .Values.gateway.port | quote }}
PHOTOS__HTTP__DRAIN_GRACE_MS: {{ .Values.server.drainGraceMs | quote }}
{{ include "photos.telemetryEnv" . }}
{{- include "photos.upstreamEnv" (dict "root" . "upstreams" .Values.gateway.upstreams) }}
PHOTOS__AUTH__ISSUER: {{ .Values.jwt.issuer | quote }}
PHOTOS__AUTH__AUDIENCE: {{ .Values.jwt.audience | quote }}
{{- if .Values.jwt.jwks }}
PHOTOS__AUTH__JWKS_PATH: "/etc/photos/jwks/jwks.json"
{{- end }}
{{- range $k, $val := .Values.gateway.env }}
{{ $k }}: {{ $val | quote }}
{{- end }}
{{- end -}}

{{/* Secret env of a component, including the Redis keys the chosen mode needs. */}}
{{- define "photos.componentSecretEnv" -}}
{{- $env := deepCopy (default (dict) .c.secretEnv) -}}
{{- if eq .name "cache-admin" -}}
{{- if eq .root.Values.redis.mode "standalone" -}}
{{- $_ := set $env "PHOTOS__REDIS__URL" "redis-url" -}}
{{- else if eq .root.Values.redis.mode "cluster" -}}
{{- $_ := set $env "PHOTOS__REDIS__CLUSTER_NODES" "redis-cluster-nodes" -}}
{{- end -}}
{{- end -}}
{{- /* The catalog's read-through cache; the gateway's Idempotency-Key records, shared by its
     replicas (without Redis each replica remembers its own keys). */ -}}
{{- if has .name (list "catalog" "gateway") -}}
{{- if eq .root.Values.redis.mode "standalone" -}}
{{- $_ := set $env "PHOTOS__CACHE__URL" "redis-url" -}}
{{- else if eq .root.Values.redis.mode "cluster" -}}
{{- $_ := set $env "PHOTOS__CACHE__CLUSTER_NODES" "redis-cluster-nodes" -}}
{{- end -}}
{{- end -}}
{{- include "photos.secretEnv" (dict "root" .root "secretEnv" $env) -}}
{{- end -}}

{{- define "photos.secretData" -}}
database-url: {{ .Values.postgres.url | quote }}
redis-url: {{ .Values.redis.url | quote }}
{{- /* figment reads a list from an environment variable written as [a,b]. */}}
redis-cluster-nodes: {{ printf "[%s]" (join "," .Values.redis.clusterNodes) | quote }}
s3-access-key: {{ .Values.s3.accessKey | quote }}
s3-secret-key: {{ .Values.s3.secretKey | quote }}
cloudfront-key-pair-id: {{ .Values.cloudfront.keyPairId | quote }}
cloudfront-private-key: {{ .Values.cloudfront.privateKey | quote }}
jwt-hs256-secret: {{ .Values.jwt.hs256Secret | quote }}
{{- end -}}
