{{/* Names and labels. */}}
{{- define "ltx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ltx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ltx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{ include "ltx.selectorLabels" (dict "root" . "component" "") }}
{{- end -}}

{{/* Selector labels; `component` is embedded | gateway | worker, or "" for release-wide objects. */}}
{{- define "ltx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ltx.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "ltx.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ltx.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ltx.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/* The pod's termination grace: preStop sleep + drain + margin, unless set (and then checked). */}}
{{- define "ltx.terminationGrace" -}}
{{- $s := .Values.shutdown -}}
{{- $needed := add $s.preStopSleepSeconds $s.graceS $s.marginSeconds -}}
{{- $grace := .explicit | default $needed -}}
{{- if lt (int $grace) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds %d is less than shutdown.preStopSleepSeconds + shutdown.graceS + shutdown.marginSeconds = %d" (int $grace) (int $needed)) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* Whether the service reads results from the local data volume (and serves them over HTTP). */}}
{{- define "ltx.localStorage" -}}
{{- if eq .Values.storage.backend "local" -}}true{{- end -}}
{{- end -}}
