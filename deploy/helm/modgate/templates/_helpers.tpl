{{/* The release's name for every object: the release name when it says modgate. */}}
{{- define "modgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: modgate
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modgate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "modgate.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "modgate.fullname" .)) -}}
{{- end -}}
{{- define "modgate.clientCASecret" -}}
{{- .Values.clientCA.existingSecret | default (printf "%s-client-ca" (include "modgate.fullname" .)) -}}
{{- end -}}
{{- define "modgate.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "modgate.fullname" .)) -}}
{{- end -}}
{{- define "modgate.s3Secret" -}}
{{- .Values.s3.existingSecret | default (printf "%s-s3" (include "modgate.fullname" .)) -}}
{{- end -}}
{{- define "modgate.s3HasKeys" -}}
{{- if or .Values.s3.existingSecret .Values.s3.accessKey -}}true{{- end -}}
{{- end -}}
{{- define "modgate.policyConfigMap" -}}
{{- .Values.policy.existingConfigMap | default (printf "%s-policy" (include "modgate.fullname" .)) -}}
{{- end -}}
{{- define "modgate.serviceAccount" -}}
{{- .Values.serviceAccount.name | default (include "modgate.fullname" .) -}}
{{- end -}}

{{/* modgate.yaml: the chart's settings, then .Values.config merged over them. */}}
{{- define "modgate.config" -}}
{{- $cfg := dict
  "listen" (printf "0.0.0.0:%v" .Values.containerPort)
  "cache" (dict "dir" "/var/cache/modgate")
  "tls" (dict
    "cert_file" "/etc/modgate/tls/tls.crt"
    "key_file" "/etc/modgate/tls/tls.key"
    "client_ca_file" "/etc/modgate/client-ca/ca.crt"
    "client_auth" .Values.clientCA.clientAuth)
  "database" (dict "url_file" "/etc/modgate/database/url" "migrate" .Values.database.migrate)
  "policy" (dict "dir" "/etc/modgate/policy" "watch_interval" .Values.policy.watchInterval)
-}}
{{- if .Values.s3.enabled -}}
{{- $s3 := dict "endpoint" .Values.s3.endpoint "bucket" .Values.s3.bucket -}}
{{- with .Values.s3.region }}{{ $_ := set $s3 "region" . }}{{ end -}}
{{- with .Values.s3.prefix }}{{ $_ := set $s3 "prefix" . }}{{ end -}}
{{- if .Values.s3.pathStyle }}{{ $_ := set $s3 "path_style" true }}{{ end -}}
{{- if include "modgate.s3HasKeys" . -}}
{{- $_ := set $s3 "access_key_file" "/etc/modgate/s3/access_key" -}}
{{- $_ := set $s3 "secret_key_file" "/etc/modgate/s3/secret_key" -}}
{{- end -}}
{{- $_ := set $cfg "storage" (dict "backend" "s3" "s3" $s3) -}}
{{- end -}}
{{- $cfg = mustMergeOverwrite $cfg (deepCopy .Values.config) -}}
{{- toYaml $cfg -}}
{{- end -}}
