{{/* The ltx-serve container. Arguments as ltx.podTemplate. */}}
{{- define "ltx.serveContainer" -}}
{{- $v := .root.Values -}}
{{- $s := .settings -}}
- name: ltx-serve
  image: {{ include "ltx.image" $v.image }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  command: ["ltx-serve"]
  args:
    - --config=/etc/ltx/config/ltx.toml
    - --log-format={{ $v.logFormat }}
    - --log-level={{ $v.logLevel }}
    {{- if .role }}
    - --role={{ .role }}
    {{- end }}
  ports:
    - {name: grpc, containerPort: {{ int $v.ports.grpc }}, protocol: TCP}
    - {name: admin, containerPort: {{ int $v.ports.admin }}, protocol: TCP}
    {{- if $v.metrics.enabled }}
    - {name: metrics, containerPort: {{ int $v.ports.metrics }}, protocol: TCP}
    {{- end }}
    {{- if eq $v.storage.backend "local" }}
    - {name: http, containerPort: {{ int $v.ports.http }}, protocol: TCP}
    {{- end }}
  env:
    - {name: HOME, value: /tmp}
    - {name: TMPDIR, value: /tmp}
    {{- if eq $v.mode "scaled" }}
    # ltx-serve's --database-url defaults to this variable: the DSN stays out of args and the ConfigMap.
    - name: LTX_DATABASE_URL
      valueFrom:
        secretKeyRef: {name: {{ $v.database.existingSecret }}, key: {{ $v.database.secretKey }}}
    {{- end }}
    {{- if eq $v.storage.backend "s3" }}
    - name: AWS_ACCESS_KEY_ID
      valueFrom:
        secretKeyRef: {name: {{ $v.storage.s3.credentialsSecret }}, key: AWS_ACCESS_KEY_ID}
    - name: AWS_SECRET_ACCESS_KEY
      valueFrom:
        secretKeyRef: {name: {{ $v.storage.s3.credentialsSecret }}, key: AWS_SECRET_ACCESS_KEY}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  # Native gRPC probes on the plaintext admin port: liveness never depends on Triton or the store;
  # readiness is NOT_SERVING while either is unavailable or the pod drains.
  startupProbe:
    grpc: {port: {{ int $v.ports.admin }}, service: liveness}
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  livenessProbe:
    grpc: {port: {{ int $v.ports.admin }}, service: liveness}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
  readinessProbe:
    grpc: {port: {{ int $v.ports.admin }}, service: readiness}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
  lifecycle:
    # Endpoints deregister during the sleep; then SIGTERM starts the drain of shutdown.graceS.
    preStop:
      exec:
        command: ["sleep", "{{ int $v.shutdown.preStopSleepSeconds }}"]
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  resources:
    {{- $resources := deepCopy $s.resources -}}
    {{- if and (not .triton) (gt (int $s.gpus) 0) -}}
    {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" (int $s.gpus)) ($resources.limits | default dict)) -}}
    {{- end }}
    {{- toYaml $resources | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/ltx/config, readOnly: true}
    - {name: tmp, mountPath: /tmp}
    - {name: data, mountPath: /var/lib/ltx}
    {{- if $v.auth.apiKeys.existingSecret }}
    - {name: api-keys, mountPath: /etc/ltx/api-keys, readOnly: true}
    {{- end }}
    {{- if $v.auth.tls.enabled }}
    - {name: tls, mountPath: /etc/ltx/tls, readOnly: true}
    {{- end }}
    {{- if $v.auth.urlSigning.existingSecret }}
    - {name: url-signing, mountPath: /etc/ltx/url-signing, readOnly: true}
    {{- end }}
{{- end -}}

{{/* The tritonserver sidecar: reached by ltx-serve on 127.0.0.1, never through a Service. */}}
{{- define "ltx.tritonContainer" -}}
{{- $v := .root.Values -}}
{{- $t := $v.triton -}}
{{- $s := .settings -}}
- name: tritonserver
  image: {{ include "ltx.image" $t.image }}
  imagePullPolicy: {{ $t.image.pullPolicy }}
  command: ["tritonserver"]
  args:
    - --model-repository={{ $t.modelRepository.path }}
    - --grpc-port={{ int $t.grpcPort }}
    - --http-port={{ int $t.httpPort }}
    - --metrics-port={{ int $t.metricsPort }}
    - --exit-timeout-secs={{ int $t.exitTimeoutSeconds }}
    {{- range $t.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - {name: triton-grpc, containerPort: {{ int $t.grpcPort }}, protocol: TCP}
    - {name: triton-http, containerPort: {{ int $t.httpPort }}, protocol: TCP}
    - {name: triton-metrics, containerPort: {{ int $t.metricsPort }}, protocol: TCP}
  env:
    - {name: HOME, value: /tmp}
    # glibc's dynamic mmap threshold keeps freed frames pieces in the heap: RSS would grow with the
    # video's length (service/engines/tritonserver_process.py, bench/README.md issue 7).
    - {name: MALLOC_MMAP_THRESHOLD_, value: "1048576"}
  startupProbe:
    httpGet: {path: /v2/health/ready, port: {{ int $t.httpPort }}}
    periodSeconds: {{ $t.startupProbe.periodSeconds }}
    failureThreshold: {{ $t.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet: {path: /v2/health/live, port: {{ int $t.httpPort }}}
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /v2/health/ready, port: {{ int $t.httpPort }}}
    periodSeconds: 5
    failureThreshold: 2
  lifecycle:
    # Keep serving while ltx-serve drains (its preStop sleep plus shutdown.graceS), then stop.
    preStop:
      exec:
        command: ["sleep", "{{ add $v.shutdown.preStopSleepSeconds $v.shutdown.graceS }}"]
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  resources:
    {{- $resources := deepCopy $t.resources -}}
    {{- if gt (int $s.gpus) 0 -}}
    {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" (int $s.gpus)) ($resources.limits | default dict)) -}}
    {{- end }}
    {{- toYaml $resources | nindent 4 }}
  volumeMounts:
    - {name: dshm, mountPath: /dev/shm}
    - {name: triton-tmp, mountPath: /tmp}
    {{- if eq $t.modelRepository.source "pvc" }}
    - name: model-repository
      mountPath: {{ $t.modelRepository.path }}
      readOnly: true
      {{- with $t.modelRepository.subPath }}
      subPath: {{ . }}
      {{- end }}
    {{- end }}
{{- end -}}
