{{/*
The pod template shared by the embedded, gateway and worker Deployments.
Arguments: root (.), component, role ("" = the default, all), settings (that component's values),
triton (bool: add the tritonserver sidecar).
*/}}
{{- define "ltx.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $s := .settings -}}
{{- $grace := include "ltx.terminationGrace" (dict "Values" $v "explicit" $s.terminationGracePeriodSeconds) -}}
metadata:
  labels:
    {{- include "ltx.selectorLabels" (dict "root" $root "component" .component) | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "ltx.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $grace }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $s.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $s.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    {{- include "ltx.serveContainer" . | nindent 4 }}
    {{- if .triton }}
    {{- include "ltx.tritonContainer" . | nindent 4 }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "ltx.fullname" $root }}-config
    - name: tmp
      emptyDir: {}
    - name: data
      {{- if and (eq .component "embedded") $v.embedded.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ $v.embedded.persistence.existingClaim | default (printf "%s-data" (include "ltx.fullname" $root)) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- if $v.auth.apiKeys.existingSecret }}
    - name: api-keys
      secret:
        secretName: {{ $v.auth.apiKeys.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if $v.auth.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ $v.auth.tls.secretName }}
        defaultMode: 0440
    {{- end }}
    {{- if $v.auth.urlSigning.existingSecret }}
    - name: url-signing
      secret:
        secretName: {{ $v.auth.urlSigning.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if .triton }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $v.triton.shmSize }}
    - name: triton-tmp
      emptyDir: {}
    {{- if eq $v.triton.modelRepository.source "pvc" }}
    - name: model-repository
      persistentVolumeClaim:
        claimName: {{ $v.triton.modelRepository.existingClaim }}
        readOnly: true
    {{- end }}
    {{- end }}
{{- end -}}
