{{/* Names and labels (the usual `helm create` shape). */}}
{{- define "agentq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentq.fullname" -}}
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

{{- define "agentq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "worker"). */}}
{{- define "agentq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentq.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "agentq.labels" -}}
helm.sh/chart: {{ include "agentq.chart" .ctx }}
{{ include "agentq.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: agentq
{{- end -}}

{{- define "agentq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "agentq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agentq.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "agentq.secretName" -}}
{{- default (include "agentq.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "agentq.simulatorName" -}}
{{- printf "%s-sim" (include "agentq.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
One option value as config-file text. Helm reads numbers from values files
as float64, which would print 10000000 as 1e+07: whole numbers are printed
as integers. A value must fit on one line (the file is `name = value` lines).
*/}}
{{- define "agentq.optionText" -}}
{{- $v := .value -}}
{{- $s := "" -}}
{{- if and (kindIs "float64" $v) (eq ($v | floor) $v) -}}
{{- $s = printf "%d" ($v | int64) -}}
{{- else -}}
{{- $s = toString $v -}}
{{- end -}}
{{- if or (contains "\n" $s) (contains "\r" $s) -}}
{{- fail (printf "config.%s: the value must be on one line" .name) -}}
{{- end -}}
{{- $s -}}
{{- end -}}

{{/*
A duration option (bare number = milliseconds, or 250ms/30s/5m/1h as the
worker parses them) in whole seconds, rounded up.
*/}}
{{- define "agentq.durationSeconds" -}}
{{- $v := .value -}}
{{- if kindIs "string" $v -}}
{{- $s := lower (trim $v) -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := trim (trimPrefix $num $s) -}}
{{- $mult := dict "" 0.001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- if or (not $num) (not (hasKey $mult $unit)) -}}
{{- fail (printf "config.%s: %q is not a duration such as 250ms, 30s, 5m or 1h" .name $v) -}}
{{- end -}}
{{- mulf (float64 $num) (get $mult $unit) | ceil | int64 -}}
{{- else -}}
{{- divf $v 1000 | ceil | int64 -}}
{{- end -}}
{{- end -}}

{{/* The worker's shutdown grace in seconds (its default is 30s). */}}
{{- define "agentq.shutdownGraceSeconds" -}}
{{- include "agentq.durationSeconds" (dict "name" "shutdown_grace" "value" (dig "shutdown_grace" "30s" .Values.config)) -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: longer than shutdown_grace, so Kubernetes
never SIGKILLs a worker that is still draining (derived: grace + 30 s).
*/}}
{{- define "agentq.terminationGraceSeconds" -}}
{{- $grace := include "agentq.shutdownGraceSeconds" . | int64 -}}
{{- $t := .Values.worker.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $t -}}
{{- add $grace 30 -}}
{{- else if le (int64 $t) $grace -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must be longer than config.shutdown_grace (%d s), or Kubernetes kills workers that are still draining" (int64 $t) $grace) -}}
{{- else -}}
{{- int64 $t -}}
{{- end -}}
{{- end -}}

{{/* The port of /metrics, /healthz and /readyz (the worker's default is 9090). */}}
{{- define "agentq.metricsPort" -}}
{{- $p := 9090 -}}
{{- if hasKey .Values.config "metrics_port" -}}
{{- $p = .Values.config.metrics_port | int -}}
{{- end -}}
{{- if eq $p 0 -}}
{{- fail "config.metrics_port 0 turns off /healthz and /readyz, which the probes need" -}}
{{- end -}}
{{- $p -}}
{{- end -}}

{{/*
The worker's options: .Values.config plus what the chart derives (file paths
of the mounted NATS secrets, the simulator's URL). Setting a derived option
in config as well is an error rather than a silent choice.
*/}}
{{- define "agentq.workerConfig" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $derived := dict -}}
{{- if .Values.nats.credsSecret.name -}}
{{- $_ := set $derived "nats_creds" (printf "/etc/agentq/nats-creds/%s" .Values.nats.credsSecret.key) -}}
{{- end -}}
{{- if .Values.nats.tls.caSecret.name -}}
{{- $_ := set $derived "nats_tls_ca" (printf "/etc/agentq/nats-ca/%s" .Values.nats.tls.caSecret.key) -}}
{{- end -}}
{{- if .Values.nats.tls.clientSecret.name -}}
{{- $_ := set $derived "nats_tls_cert" (printf "/etc/agentq/nats-client/%s" .Values.nats.tls.clientSecret.certKey) -}}
{{- $_ := set $derived "nats_tls_key" (printf "/etc/agentq/nats-client/%s" .Values.nats.tls.clientSecret.keyKey) -}}
{{- end -}}
{{- range $k, $v := $derived -}}
{{- if hasKey $cfg $k -}}
{{- fail (printf "config.%s is set by the chart from nats.*Secret; set one or the other" $k) -}}
{{- end -}}
{{- $_ := set $cfg $k $v -}}
{{- end -}}
{{- if and .Values.simulator.enabled .Values.simulator.wireWorkers (not (hasKey $cfg "base_url")) -}}
{{- $_ := set $cfg "base_url" (printf "http://%s:%d" (include "agentq.simulatorName" .) (.Values.simulator.port | int)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Options `agentq init` understands (`agentq init --help`): the hook Job passes
these from config as flags. tests/helm checks this list against the binary.
*/}}
{{- define "agentq.initOptions" -}}
nats_url nats_creds nats_user nats_timeout nats_inbox_prefix nats_tls_ca nats_tls_cert nats_tls_key
task_stream task_subjects consumer dlq_stream dlq_subjects results_bucket replicas
results_ttl dedup_window stream_max_msgs stream_max_bytes max_msg_size ack_wait
max_deliver max_ack_pending dlq_max_age advisory_stream backstop_consumer
deferred_stream deferred_subjects
cache_bucket cache_ttl budget_bucket budget_ttl runs_bucket runs_ttl runs_max_bytes
session_bucket session_ttl session_max_bytes
{{- end -}}

{{/* The NATS secrets as environment variables; call with (dict "ctx" $ "secret" name). */}}
{{- define "agentq.natsSecretEnv" -}}
- name: AGENTQ_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .ctx.Values.secrets.keys.natsPassword }}
      optional: true
- name: AGENTQ_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .ctx.Values.secrets.keys.natsToken }}
      optional: true
{{- end -}}

{{/* Volumes of the NATS credentials and TLS Secrets. */}}
{{- define "agentq.natsVolumes" -}}
{{- with .Values.nats.credsSecret.name }}
- name: nats-creds
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.nats.tls.caSecret.name }}
- name: nats-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.nats.tls.clientSecret.name }}
- name: nats-client
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "agentq.natsVolumeMounts" -}}
{{- if .Values.nats.credsSecret.name }}
- name: nats-creds
  mountPath: /etc/agentq/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.caSecret.name }}
- name: nats-ca
  mountPath: /etc/agentq/nats-ca
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.clientSecret.name }}
- name: nats-client
  mountPath: /etc/agentq/nats-client
  readOnly: true
{{- end }}
{{- end -}}
