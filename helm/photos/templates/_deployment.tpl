{{/* A component's Deployment. Args: dict root, name, c (merged values), config (rendered
     ConfigMap data, hashed so a config change rolls the pods). */}}
{{- define "photos.deployment" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $gateway := eq .name "gateway" -}}
{{- $fullname := include "photos.componentName" (dict "root" $root "name" .name) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "photos.componentLabels" (dict "root" $root "name" .name) | nindent 4 }}
spec:
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ $c.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "photos.selector" (dict "root" $root "name" .name) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # New pods become ready before old ones drain: capacity never drops during a rollout.
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "photos.componentLabels" (dict "root" $root "name" .name) | nindent 8 }}
      annotations:
        checksum/config: {{ .config | sha256sum }}
        checksum/secret: {{ include "photos.secretData" $root | sha256sum }}
    spec:
      serviceAccountName: {{ include "photos.fullname" $root }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      {{- include "photos.podSecurity" $root | nindent 6 }}
      containers:
        - name: {{ .name }}
          image: {{ include "photos.image" (dict "root" $root "binary" $c.binary) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            {{- if $gateway }}
            - name: http
              containerPort: {{ $c.port }}
              protocol: TCP
            {{- else }}
            - name: grpc
              containerPort: {{ $c.grpcPort }}
              protocol: TCP
            - name: admin
              containerPort: {{ $c.adminPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}
          {{- $secretEnv := include "photos.componentSecretEnv" (dict "root" $root "name" .name "c" $c) }}
          {{- if $secretEnv }}
          env:
            {{- $secretEnv | trim | nindent 12 }}
          {{- end }}
          {{- if $gateway }}
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            initialDelaySeconds: 5
            periodSeconds: 10
            failureThreshold: 3
          {{- else }}
          # Native gRPC probe (grpc.health.v1): SERVING only after migrations and dependency
          # checks, NOT_SERVING as soon as SIGTERM arrives, so the pod leaves the Service and the
          # headless DNS answer before its listener closes.
          readinessProbe:
            grpc:
              port: {{ $c.grpcPort }}
            periodSeconds: 5
            failureThreshold: 2
          # startupProbe (gRPC) holds liveness off until the first SERVING, i.e. after
          # migrations. Liveness then asks the admin port's /live, which answers while the
          # process runs: a NOT_SERVING server (dependency down, or draining after SIGTERM with
          # its gRPC listener closed) must be taken out of rotation, not restarted.
          startupProbe:
            grpc:
              port: {{ $c.grpcPort }}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /live
              port: admin
            periodSeconds: 10
            failureThreshold: 3
          {{- end }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and $gateway $root.Values.jwt.jwks }}
            - name: jwks
              mountPath: /etc/photos/jwks
              readOnly: true
            {{- end }}
      volumes:
        # The root filesystem is read-only; image work may spill to /tmp.
        - name: tmp
          emptyDir: {}
        {{- if and $gateway $root.Values.jwt.jwks }}
        # Public verification keys: not secret, a ConfigMap.
        - name: jwks
          configMap:
            name: {{ $fullname }}-jwks
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
