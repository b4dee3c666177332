{{/* Names, labels and the wiring shared by the templates. */}}

{{- define "xgenmm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix of every object name; short enough that "<fullname>-decoder-<hash>-<id>" pod names stay whole. */}}
{{- define "xgenmm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "xgenmm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component: include "xgenmm.selectorLabels" (dict "root" $ "component" "gateway") */}}
{{- define "xgenmm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xgenmm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "xgenmm.labels" -}}
{{ include "xgenmm.selectorLabels" . }}
helm.sh/chart: {{ include "xgenmm.chart" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: xgenmm
{{- end -}}

{{- define "xgenmm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "xgenmm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: include "xgenmm.image" (dict "root" $ "repository" "xgenmm/silo") */}}
{{- define "xgenmm.image" -}}
{{- $images := .root.Values.images -}}
{{- $tag := default .root.Chart.AppVersion $images.tag -}}
{{- if $images.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $images.registry) .repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "xgenmm.redis.fullname" -}}
{{- printf "%s-redis" (include "xgenmm.fullname" .) -}}
{{- end -}}

{{/* The Secret and key that hold the bundled Redis password. */}}
{{- define "xgenmm.redis.passwordSecret" -}}
{{- default (include "xgenmm.redis.fullname" .) .Values.redis.bundled.existingSecret -}}
{{- end -}}

{{/* The Secret and key that hold an external Redis connection string. */}}
{{- define "xgenmm.redis.externalSecret" -}}
{{- default (printf "%s-redis-external" (include "xgenmm.fullname" .)) .Values.redis.external.existingSecret -}}
{{- end -}}

{{/*
Environment of every Orleans member (silos and the gateway): tracing, cluster identity and the membership connection string.
With the bundled Redis the password comes from its Secret and is spliced into the string by Kubernetes' $(VAR) expansion.
*/}}
{{- define "xgenmm.clusterEnv" -}}
{{- with .Values.tracing.otlpEndpoint }}
- name: Telemetry__OtlpEndpoint
  value: {{ . | quote }}
{{- end }}
- name: Cluster__ClusterId
  value: {{ .Values.cluster.clusterId | quote }}
- name: Cluster__ServiceId
  value: {{ .Values.cluster.serviceId | quote }}
- name: Cluster__Clustering
  value: Redis
{{- if eq .Values.redis.mode "bundled" }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "xgenmm.redis.passwordSecret" . }}
      key: {{ .Values.redis.bundled.existingSecretKey }}
- name: Cluster__RedisConnectionString
  value: {{ printf "%s:%d,password=$(REDIS_PASSWORD),abortConnect=false" (include "xgenmm.redis.fullname" .) (int .Values.redis.bundled.port) | quote }}
{{- else }}
- name: Cluster__RedisConnectionString
  valueFrom:
    secretKeyRef:
      name: {{ include "xgenmm.redis.externalSecret" . }}
      key: {{ .Values.redis.external.existingSecretKey }}
{{- end }}
{{- end -}}

{{/* Directory of the checkpoint inside the containers (Model:Path); empty for the embedded model. */}}
{{- define "xgenmm.model.path" -}}
{{- $m := .Values.model -}}
{{- if eq $m.source "huggingface" -}}
{{- printf "/models/hf/%s/%s" $m.huggingface.repo $m.huggingface.revision -}}
{{- else if eq $m.source "pvc" -}}
{{- trimSuffix "/" (printf "/models/%s" (trimPrefix "/" $m.pvc.path)) -}}
{{- else if eq $m.source "hostPath" -}}
/models
{{- end -}}
{{- end -}}

{{/* The model volume (none for the embedded model). */}}
{{- define "xgenmm.model.volume" -}}
{{- $m := .Values.model -}}
{{- if eq $m.source "huggingface" }}
- name: model
{{- $c := $m.huggingface.cache }}
{{- if eq $c.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-model-cache" (include "xgenmm.fullname" .)) $c.pvc.existingClaim }}
{{- else if eq $c.type "hostPath" }}
  hostPath:
    path: {{ $c.hostPath.path }}
    type: DirectoryOrCreate
{{- else }}
  emptyDir:
    sizeLimit: {{ $c.emptyDir.sizeLimit }}
{{- end }}
{{- else if eq $m.source "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ $m.pvc.claimName }}
    readOnly: true
{{- else if eq $m.source "hostPath" }}
- name: model
  hostPath:
    path: {{ $m.hostPath.path }}
    type: Directory
{{- end }}
{{- end -}}

{{- define "xgenmm.model.mount" -}}
{{- if ne .Values.model.source "embedded" }}
- name: model
  mountPath: /models
  readOnly: true
{{- end }}
{{- end -}}

{{/*
The init container that fetches the Hugging Face checkpoint into the cache volume: the pod's own image in its
--download-model mode (src/XGenMM.Model.Hub), so a pod pulls no image but its own. The host resumes cut transfers,
checks every file against the hub's hashes, and holds a lock in the cache, so pods that share a claim wait for one
download instead of racing; a finished copy costs one API call (none for a pinned commit).
include "xgenmm.model.initContainer" (dict "root" $ "profile" "full"|"meta" "image" <main container's image> "extraEnv" <its extraEnv>)
*/}}
{{- define "xgenmm.model.initContainer" -}}
{{- $root := .root -}}
{{- $hf := $root.Values.model.huggingface -}}
{{- if eq $root.Values.model.source "huggingface" }}
- name: model-download
  image: {{ .image }}
  imagePullPolicy: {{ $root.Values.images.pullPolicy }}
  args: ["--download-model"]
  env:
    - name: Model__Path
      value: {{ include "xgenmm.model.path" $root | quote }}
    - name: Model__HuggingFace__Repo
      value: {{ $hf.repo | quote }}
    - name: Model__HuggingFace__Revision
      value: {{ $hf.revision | quote }}
    {{- /* The gateway tokenizes only: its pods need no weights (tens of GB). */}}
    - name: Model__HuggingFace__Files
      value: {{ ternary (join "," $hf.gatewayAllowPatterns) (join "," $hf.siloFiles) (eq .profile "meta") | quote }}
    {{- with $hf.endpoint }}
    - name: Model__HuggingFace__Endpoint
      value: {{ . | quote }}
    {{- end }}
    {{- if $hf.tokenSecret.name }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $hf.tokenSecret.name }}
          key: {{ $hf.tokenSecret.key }}
    {{- end }}
    # .NET's diagnostics need a writable place; the root filesystem is read-only.
    - name: HOME
      value: /tmp
    {{- /* The download logs in the same format as the server it precedes (e.g. JSON lines for the log pipeline). */}}
    {{- range .extraEnv }}
    {{- if hasPrefix "Logging__" .name }}
    - {{ toYaml . | nindent 6 | trim }}
    {{- end }}
    {{- end }}
  resources: {{- toYaml $hf.resources | nindent 4 }}
  securityContext: {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: model
      mountPath: /models
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* Pod anti-affinity from a preset (soft|hard|none), unless an explicit affinity is given. */}}
{{- define "xgenmm.affinity" -}}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else if eq .preset "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels: {{- include "xgenmm.selectorLabels" (dict "root" .root "component" .component) | nindent 10 }}
{{- else if eq .preset "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{- include "xgenmm.selectorLabels" (dict "root" .root "component" .component) | nindent 12 }}
{{- end }}
{{- end -}}

{{/*
Pod annotations: Prometheus scrape hints for /metrics on `port` (monitoring.scrapeAnnotations), the `checksums` given,
and the user's `extra`. Renders the whole `annotations:` key, or nothing when there are none.
include "xgenmm.podAnnotations" (dict "root" $ "port" 8080 "checksums" (dict ...) "extra" $.Values.x.podAnnotations)
*/}}
{{- define "xgenmm.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .root.Values.monitoring.scrapeAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge $annotations (default dict .checksums) (default dict .extra) -}}
{{- with $annotations -}}
annotations: {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Silo groups that are enabled, in a stable order. */}}
{{- define "xgenmm.siloGroups" -}}
{{- $groups := list -}}
{{- range $name := list "vision" "decoder" "combined" -}}
{{- if (index $.Values.silos $name).enabled -}}
{{- $groups = append $groups $name -}}
{{- end -}}
{{- end -}}
{{- join "," $groups -}}
{{- end -}}

{{/* Seconds from SIGTERM to SIGKILL of a silo: more than preStop + drain, so that a drained silo can leave the cluster. */}}
{{- define "xgenmm.silo.grace" -}}
{{- $g := .group -}}
{{- $floor := add $g.preStopSleepSeconds $g.drainTimeoutSeconds -}}
{{- if kindIs "invalid" $g.terminationGracePeriodSeconds -}}
{{- add $floor 30 -}}
{{- else if le (int $g.terminationGracePeriodSeconds) (int $floor) -}}
{{- fail (printf "silos.%s.terminationGracePeriodSeconds (%d) must be larger than preStopSleepSeconds + drainTimeoutSeconds (%d): Kubernetes would kill the silo while it drains." .name (int $g.terminationGracePeriodSeconds) (int $floor)) -}}
{{- else -}}
{{- $g.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "xgenmm.tenants.secret" -}}
{{- default (printf "%s-tenants" (include "xgenmm.fullname" .)) .Values.tenants.existingSecret -}}
{{- end -}}

{{- define "xgenmm.tenants.firstKeySecret" -}}
{{- printf "%s-first-api-key" (include "xgenmm.fullname" .) -}}
{{- end -}}

{{/* The model id of the API (Gateway:ModelId, the `model` of requests): gateway.modelId, else the Hugging Face repo
id, else the checkpoint directory's name. */}}
{{- define "xgenmm.modelId" -}}
{{- $m := .Values.model -}}
{{- if .Values.gateway.modelId -}}
{{- .Values.gateway.modelId -}}
{{- else if eq $m.source "huggingface" -}}
{{- $m.huggingface.repo -}}
{{- else if eq $m.source "pvc" -}}
{{- $dir := trimSuffix "/" $m.pvc.path -}}
{{- ternary $m.pvc.claimName (base $dir) (eq $dir "") -}}
{{- else if eq $m.source "hostPath" -}}
{{- base (trimSuffix "/" $m.hostPath.path) -}}
{{- else -}}
xgenmm-nano
{{- end -}}
{{- end -}}

{{- /*
The silo autoscaler engine in effect: "keda" only when the cluster serves KEDA's ScaledObject API (a plain cluster
without KEDA gets fixed replicas instead of objects it cannot create), "hpa" as configured, else "none".
*/ -}}
{{- define "xgenmm.siloAutoscaler" -}}
{{- $engine := .Values.autoscaling.engine -}}
{{- if eq $engine "keda" -}}
{{- if .Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject" -}}keda{{- else -}}none{{- end -}}
{{- else -}}{{ $engine }}{{- end -}}
{{- end -}}

{{- /*
Prometheus operator monitors in effect ("true" or ""): a switch of true or false wins; "auto" renders them only when
the cluster serves monitoring.coreos.com/v1. ServiceMonitors on auto step aside when PodMonitors are on (one scrape
per target).
*/ -}}
{{- define "xgenmm.monitoring.podMonitor" -}}
{{- $on := .Values.monitoring.podMonitor.enabled -}}
{{- if eq (toString $on) "auto" -}}{{- $on = .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end -}}

{{- define "xgenmm.monitoring.serviceMonitor" -}}
{{- $on := .Values.monitoring.serviceMonitor.enabled -}}
{{- if eq (toString $on) "auto" -}}{{- $on = and (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") (not (include "xgenmm.monitoring.podMonitor" .)) -}}{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end -}}
