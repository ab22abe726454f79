{{/*
Shared named templates. Every per-service resource loops over the catalog
below and builds its service with "privacam.service", so no block is written
once per service: adding a service means one catalog entry, one values entry
(and its schema) and one flow in scripts/check_chart.sh.
*/}}

{{/*
Facts of the code, not knobs: which services cameras and apps may call
(public), which one also serves the server-authenticated enrollment port where
apps and cameras get their first certificate (publicPort: RegisterAccount,
SignIn, EnrollCamera; PRIVACAM_<SERVICE>_ENROLLMENT_PORT), whom each service
calls over gRPC (calls), and what it needs beyond Kafka and its mTLS identity,
which every service has (needs: an endpoint, a mounted Secret of
"privacam.mountedSecrets", or clipRetention, the retention bounds owners
choose within; "privacam.service" adds kafka to every service's needs). Keys are the Python module names (services.<key>); Kubernetes
names use dashes. The NetworkPolicies are derived from this table.
*/}}
{{- define "privacam.catalog" -}}
device_auth:
  public: true
  publicPort: true
  calls: [access_log]
  needs: [redis, issuingCa, issuingCaPin, clipRetention, accessLogKeys]
key_manager:
  public: false
  publicPort: false
  calls: []
  needs: [rootKey, accessLogKeys]
clip_ingest:
  public: true
  publicPort: false
  calls: [key_manager, device_auth, access_log]
  needs: [redis, minio]
relay_broker:
  public: true
  publicPort: false
  calls: [device_auth, access_log]
  needs: [redis, turn]
retention:
  public: true
  publicPort: false
  calls: [key_manager, device_auth, clip_ingest, access_log]
  needs: [redis, minio]
access_log:
  public: true
  publicPort: false
  calls: []
  needs: [minio, accessLogSigningKey]
privacy_watch:
  public: false
  publicPort: false
  calls: []
  needs: []
{{- end }}

{{- define "privacam.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, plus the chart name unless the release name holds it. */}}
{{- define "privacam.fullname" -}}
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

{{- define "privacam.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "privacam.labels" -}}
helm.sh/chart: {{ include "privacam.chart" . }}
app.kubernetes.io/name: {{ include "privacam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: privacam
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector of one service's pods. Input: dict root, s (a "privacam.service"). */}}
{{- define "privacam.selectorLabels" -}}
app.kubernetes.io/name: {{ include "privacam.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .s.dashed }}
{{- end }}

{{/* Labels of one service's resources. Input: dict root, s. */}}
{{- define "privacam.serviceLabels" -}}
{{ include "privacam.labels" .root }}
app.kubernetes.io/component: {{ .s.dashed }}
{{- end }}

{{/* Selector of the `helm test` pods. */}}
{{- define "privacam.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "privacam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/*
One service, everything a template needs: serviceDefaults deep-merged with
services.<key>, plus the catalog's facts and derived names. Returned as YAML:
use with `include "privacam.service" (dict "root" $ "name" $key) | fromYaml`.
*/}}
{{- define "privacam.service" -}}
{{- $root := .root }}
{{- $catalog := include "privacam.catalog" $root | fromYaml }}
{{- $facts := index $catalog .name }}
{{- $overrides := index $root.Values.services .name | default dict }}
{{- $s := mergeOverwrite (deepCopy $root.Values.serviceDefaults) (deepCopy $overrides) }}
{{- $dashed := replace "_" "-" .name }}
{{- $fullname := printf "%s-%s" (include "privacam.fullname" $root) $dashed }}
{{- $callers := list }}
{{- range $other, $f := $catalog }}
{{- if has $.name $f.calls }}
{{- $callers = append $callers $other }}
{{- end }}
{{- end }}
{{- $_ := set $s "key" .name }}
{{- $_ = set $s "dashed" $dashed }}
{{- $_ = set $s "fullname" $fullname }}
{{- $_ = set $s "envPrefix" (printf "PRIVACAM_%s_" (upper .name)) }}
{{- $_ = set $s "command" (printf "privacam-%s" $dashed) }}
{{- $_ = set $s "public" $facts.public }}
{{- $_ = set $s "publicPort" $facts.publicPort }}
{{- $_ = set $s "calls" $facts.calls }}
{{- $_ = set $s "callers" $callers }}
{{- $_ = set $s "needs" (append $facts.needs "kafka") }}
{{- $_ = set $s "tlsSecret" (default (printf "%s-tls" $fullname) $s.tlsSecretName) }}
{{- $_ = set $s "spiffeId" (printf "spiffe://%s/service/%s" $root.Values.tls.trustDomain $dashed) }}
{{- $_ = set $s "testTlsSecret" (include "privacam.testTlsSecret" $root) }}
{{- toYaml $s }}
{{- end }}

{{/* The image reference: repository:tag, or repository:tag@digest when a digest is given. */}}
{{- define "privacam.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "privacam.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Restricted pod security (Pod Security Standards "restricted"), fixed UID/GID 10001 as in docker/Dockerfile. */}}
{{- define "privacam.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "privacam.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Where each service's TLS Secret (ca.crt, tls.crt, tls.key) is mounted. */}}
{{- define "privacam.tlsDir" -}}/var/run/secrets/privacam/tls{{- end }}

{{/* Name of a dependency's Secret: the configured one, or <fullname>-<suffix>. Input: dict root, name, suffix. */}}
{{- define "privacam.secretName" -}}
{{- default (printf "%s-%s" (include "privacam.fullname" .root) .suffix) .name }}
{{- end }}

{{/* Name of one service's Kafka user Secret (kafka.existingSecrets.<service>). Input: dict root, dashed (the service's dashed name). */}}
{{- define "privacam.kafkaSecretName" -}}
{{- $ref := index .root.Values.kafka.existingSecrets .dashed }}
{{- include "privacam.secretName" (dict "root" .root "name" $ref.name "suffix" (printf "kafka-%s" .dashed)) }}
{{- end }}

{{/*
Secrets mounted as read-only files into the services whose catalog `needs`
name them, keyed by that need: the Secret, the directory, and per file the
Secret key, the file name and the setting (PRIVACAM_<SERVICE>_<env>, or
<envPrefix><env> when the entry has an envPrefix) that points at it. Deployment volumes, the ConfigMap and NOTES.txt all read this
table. Input: the root context. Returned as YAML.
*/}}
{{- define "privacam.mountedSecrets" -}}
{{- $v := .Values }}
rootKey:
  volume: root-key
  dir: /var/run/secrets/privacam/root-key
  secretName: {{ include "privacam.secretName" (dict "root" . "name" $v.rootKey.existingSecret.name "suffix" "root-key") }}
  files:
    - key: {{ $v.rootKey.existingSecret.key | quote }}
      path: root.key
      env: ROOT_KEY_FILE
issuingCa:
  volume: issuing-ca
  dir: /var/run/secrets/privacam/issuing-ca
  secretName: {{ include "privacam.secretName" (dict "root" . "name" $v.issuingCa.existingSecret.name "suffix" "issuing-ca") }}
  files:
    - key: {{ $v.issuingCa.existingSecret.certKey | quote }}
      path: ca.crt
      env: ISSUING_CA_CERT_FILE
{{- if not $v.issuingCa.pkcs11.enabled }}
    - key: {{ $v.issuingCa.existingSecret.keyKey | quote }}
      path: ca.key
      env: ISSUING_CA_KEY_FILE
{{- else }}
issuingCaPin:
  volume: issuing-ca-pin
  dir: /var/run/secrets/privacam/issuing-ca-pin
  secretName: {{ required "issuingCa.pkcs11.pinSecret.name is required with issuingCa.pkcs11.enabled" $v.issuingCa.pkcs11.pinSecret.name }}
  files:
    - key: {{ $v.issuingCa.pkcs11.pinSecret.key | quote }}
      path: pin
      env: ISSUING_CA_PKCS11_PIN_FILE
{{- end }}
accessLogSigningKey:
  volume: access-log-signing-key
  dir: /var/run/secrets/privacam/access-log-signing-key
  secretName: {{ include "privacam.secretName" (dict "root" . "name" $v.accessLog.signingKey.existingSecret.name "suffix" "access-log-signing-key") }}
  files:
    - key: {{ $v.accessLog.signingKey.existingSecret.key | quote }}
      path: signing.key
      env: SIGNING_KEY_FILE
{{- if and $v.kafka.tls.caSecret.name (ne $v.kafka.securityProtocol "PLAINTEXT") }}
kafka:
  volume: kafka-ca
  dir: /var/run/secrets/privacam/kafka-ca
  secretName: {{ $v.kafka.tls.caSecret.name }}
  # Kafka's settings are the same in every service: PRIVACAM_KAFKA_CA_FILE, not PRIVACAM_<SERVICE>_...
  envPrefix: PRIVACAM_KAFKA_
  files:
    - key: {{ $v.kafka.tls.caSecret.key | quote }}
      path: ca.crt
      env: CA_FILE
{{- end }}
{{- if $v.redis.tls.caSecret.name }}
redis:
  volume: redis-ca
  dir: /var/run/secrets/privacam/redis-ca
  secretName: {{ $v.redis.tls.caSecret.name }}
  files:
    - key: {{ $v.redis.tls.caSecret.key | quote }}
      path: ca.crt
      env: REDIS_CA_FILE
{{- end }}
accessLogKeys:
  volume: access-log-keys
  dir: /var/run/secrets/privacam/access-log-keys
  secretName: {{ include "privacam.secretName" (dict "root" . "name" $v.accessLog.publicKeys.existingSecret.name "suffix" "access-log-keys") }}
  files:
    - key: {{ $v.accessLog.publicKeys.existingSecret.key | quote }}
      path: keys.json
      env: ACCESS_LOG_KEYS_FILE
{{- end }}

{{/*
Non-secret environment of one service (its ConfigMap's data). Input: dict root, s.
Names follow services/common/settings.py.
*/}}
{{- define "privacam.configData" -}}
{{- $v := .root.Values }}
{{- $p := .s.envPrefix }}
{{ $p }}BIND_HOST: "0.0.0.0"
{{ $p }}GRPC_PORT: {{ $v.ports.grpc | quote }}
{{ $p }}HEALTH_PORT: {{ $v.ports.health | quote }}
{{ $p }}METRICS_PORT: {{ $v.ports.metrics | quote }}
{{- if .s.publicPort }}
{{ $p }}ENROLLMENT_PORT: {{ $v.ports.enrollment | quote }}
{{- end }}
{{ $p }}LOG_LEVEL: {{ .s.logLevel | quote }}
{{ $p }}SHUTDOWN_GRACE_SECONDS: {{ $v.shutdownGraceSeconds | quote }}
PRIVACAM_TLS_CA_FILE: {{ printf "%s/ca.crt" (include "privacam.tlsDir" .) | quote }}
PRIVACAM_TLS_CERT_FILE: {{ printf "%s/tls.crt" (include "privacam.tlsDir" .) | quote }}
PRIVACAM_TLS_KEY_FILE: {{ printf "%s/tls.key" (include "privacam.tlsDir" .) | quote }}
PRIVACAM_TLS_TRUST_DOMAIN: {{ $v.tls.trustDomain | quote }}
PRIVACAM_KAFKA_BOOTSTRAP_SERVERS: {{ $v.kafka.bootstrapServers | quote }}
PRIVACAM_KAFKA_REPLICATION_FACTOR: {{ $v.kafka.replicationFactor | quote }}
PRIVACAM_KAFKA_TOPIC_PARTITIONS: {{ $v.kafka.topicPartitions | quote }}
PRIVACAM_KAFKA_NAMESPACE: {{ $v.kafka.namespace | quote }}
PRIVACAM_KAFKA_SECURITY_PROTOCOL: {{ $v.kafka.securityProtocol | quote }}
{{- if eq $v.kafka.securityProtocol "SASL_SSL" }}
PRIVACAM_KAFKA_SASL_MECHANISM: {{ $v.kafka.saslMechanism | quote }}
{{- end }}
{{- if has "minio" .s.needs }}
PRIVACAM_MINIO_ENDPOINT: {{ $v.minio.endpoint | quote }}
PRIVACAM_MINIO_SECURE: {{ $v.minio.secure | toString | quote }}
{{- if not (has "accessLogSigningKey" .s.needs) }}
{{ $p }}CLIP_BUCKET: {{ $v.minio.clipBucket | quote }}
{{- end }}
{{- end }}
{{- if has "accessLogSigningKey" .s.needs }}
{{ $p }}BUCKET: {{ $v.accessLog.bucket | quote }}
{{ $p }}SIGNING_KEY_ID: {{ $v.accessLog.signingKeyId | quote }}
{{- end }}
{{- if has "turn" .s.needs }}
PRIVACAM_TURN_URIS: {{ $v.turn.uris | quote }}
{{- end }}
{{- if and (has "issuingCa" .s.needs) $v.issuingCa.pkcs11.enabled }}
{{ $p }}ISSUING_CA_PKCS11_MODULE: {{ $v.issuingCa.pkcs11.module | quote }}
{{ $p }}ISSUING_CA_PKCS11_TOKEN: {{ $v.issuingCa.pkcs11.token | quote }}
{{ $p }}ISSUING_CA_PKCS11_LABEL: {{ $v.issuingCa.pkcs11.label | quote }}
{{- end }}
{{- /* The services it calls, by their headless Services' names (in their certificates'
DNS names): dns:/// resolves every ready pod, and the channel calls them round robin. */}}
{{- range .s.calls }}
{{- $peer := include "privacam.service" (dict "root" $.root "name" .) | fromYaml }}
PRIVACAM_PEER_{{ upper . }}: {{ printf "dns:///%s-peers.%s.svc:%v" $peer.fullname $.root.Release.Namespace $v.ports.grpc | quote }}
{{- end }}
{{- range $need, $m := include "privacam.mountedSecrets" .root | fromYaml }}
{{- if has $need $.s.needs }}
{{- range $m.files }}
{{ default $p $m.envPrefix }}{{ .env }}: {{ printf "%s/%s" $m.dir .path | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if has "clipRetention" .s.needs }}
{{ $p }}RETENTION_DAYS_DEFAULT: {{ $v.clipRetention.defaultDays | quote }}
{{ $p }}RETENTION_DAYS_MIN: {{ $v.clipRetention.minDays | quote }}
{{ $p }}RETENTION_DAYS_MAX: {{ $v.clipRetention.maxDays | quote }}
{{- end }}
{{- range $key, $value := .s.settings }}
{{ $p }}{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- if $v.tracing.enabled }}
OTEL_TRACES_EXPORTER: "otlp"
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $v.tracing.endpoint | quote }}
OTEL_TRACES_SAMPLER: {{ $v.tracing.sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ $v.tracing.samplerArg | quote }}
OTEL_RESOURCE_ATTRIBUTES: {{ printf "service.namespace=privacam,service.version=%s,k8s.namespace.name=%s,k8s.deployment.name=%s" .root.Chart.AppVersion .root.Release.Namespace .s.fullname | quote }}
{{- else }}
OTEL_TRACES_EXPORTER: "none"
{{- end }}
{{- end }}

{{/* Secret environment of one service: references only, the chart never holds a secret value. Input: dict root, s. */}}
{{- define "privacam.secretEnv" -}}
{{- $v := .root.Values }}
{{- if and (has "kafka" .s.needs) (eq $v.kafka.securityProtocol "SASL_SSL") }}
{{- $kafka := index $v.kafka.existingSecrets .s.dashed }}
{{- $kafkaSecret := include "privacam.kafkaSecretName" (dict "root" .root "dashed" .s.dashed) }}
- name: PRIVACAM_KAFKA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $kafkaSecret }}
      key: {{ $kafka.usernameKey }}
- name: PRIVACAM_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $kafkaSecret }}
      key: {{ $kafka.passwordKey }}
{{- end }}
{{- if has "redis" .s.needs }}
{{- $redis := index $v.redis.existingSecrets .s.dashed }}
- name: {{ .s.envPrefix }}REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "privacam.secretName" (dict "root" .root "name" $redis.name "suffix" (printf "redis-%s" .s.dashed)) }}
      key: {{ $redis.key }}
{{- end }}
{{- if has "minio" .s.needs }}
{{- $minio := include "privacam.secretName" (dict "root" .root "name" $v.minio.existingSecret.name "suffix" "minio") }}
- name: PRIVACAM_MINIO_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $minio }}
      key: {{ printf "%s-access-key" .s.dashed }}
- name: PRIVACAM_MINIO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $minio }}
      key: {{ printf "%s-secret-key" .s.dashed }}
{{- end }}
{{- if has "turn" .s.needs }}
- name: PRIVACAM_TURN_SHARED_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "privacam.secretName" (dict "root" .root "name" $v.turn.existingSecret.name "suffix" "turn") }}
      key: {{ $v.turn.existingSecret.key }}
{{- end }}
{{- end }}

{{/* A gRPC probe on the plaintext health port. Input: dict root, probe (timings). */}}
{{- define "privacam.grpcProbe" -}}
grpc:
  port: {{ .root.Values.ports.health }}
{{ toYaml .probe }}
{{- end }}

{{/*
A NetworkPolicy rule's peers. Input: dict peers (NetworkPolicyPeer list),
key ("from" or "to"), extra (peers always added). An empty `peers` list means
any peer, so the key is left out, unless `extra` is given.
*/}}
{{- define "privacam.peers" -}}
{{- if .peers -}}
{{ .key }}:
{{- toYaml (concat .peers (.extra | default list)) | nindent 2 }}
{{- end -}}
{{- end }}

{{/* Same-namespace pod selector of a service by its key. Input: dict root, name. */}}
{{- define "privacam.podPeer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ include "privacam.name" .root }}
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/component: {{ replace "_" "-" .name }}
{{- end }}

{{/* Checks across values that the JSON schema cannot express; rendered by NOTES.txt and every service template. */}}
{{- define "privacam.validate" -}}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (addf .Values.preStopSleepSeconds .Values.shutdownGraceSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + shutdownGraceSeconds (%v + %v): the kubelet would kill in-flight calls" .Values.terminationGracePeriodSeconds .Values.preStopSleepSeconds .Values.shutdownGraceSeconds) }}
{{- end }}
{{- if gt (len (include "privacam.fullname" .)) 40 }}
{{- fail (printf "the resource name prefix %q is longer than 40 characters: set fullnameOverride" (include "privacam.fullname" .)) }}
{{- end }}
{{- $ports := list (int .Values.ports.grpc) (int .Values.ports.health) (int .Values.ports.metrics) (int .Values.ports.enrollment) | uniq }}
{{- if ne (len $ports) 4 }}
{{- fail "ports.grpc, ports.health, ports.metrics and ports.enrollment must differ" }}
{{- end }}
{{- $r := .Values.clipRetention }}
{{- if not (and (le (int $r.minDays) (int $r.defaultDays)) (le (int $r.defaultDays) (int $r.maxDays))) }}
{{- fail (printf "clipRetention must satisfy minDays (%v) <= defaultDays (%v) <= maxDays (%v)" $r.minDays $r.defaultDays $r.maxDays) }}
{{- end }}
{{- end }}

{{/* The Secret with the `helm test` identity's certificate, or "" when the tests check the health port only. */}}
{{- define "privacam.testTlsSecret" -}}
{{- if .Values.tests.tlsSecretName }}{{ .Values.tests.tlsSecretName }}
{{- else if .Values.certManager.enabled }}{{ include "privacam.fullname" . }}-test-tls
{{- end }}
{{- end }}
