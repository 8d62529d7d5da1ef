{{/*
Names. Gantry is one per cluster (its CRDs, webhooks and scheduler name are cluster-wide), so
object names do not carry the release name: "gantry-<component>", or fullnameOverride.
*/}}
{{- define "gantry.fullname" -}}
{{- default "gantry" .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "gantry.name" -}}
{{- printf "%s-%s" (include "gantry.fullname" .root) .component -}}
{{- end -}}

{{/* Labels on every object; selectorLabels is the stable subset Deployments select on. */}}
{{- define "gantry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: gantry
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: gantry
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The `gantry` image. */}}
{{- define "gantry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A component's service account, as Kubernetes names it in tokens. */}}
{{- define "gantry.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .root.Release.Namespace (include "gantry.name" .) -}}
{{- end -}}

{{/* The quota API's in-cluster base URL (empty when it is not installed). */}}
{{- define "gantry.quotaApiUrl" -}}
{{- if .Values.quotaApi.enabled -}}
{{- printf "http://%s.%s.svc:%v" (include "gantry.name" (dict "root" . "component" "quota-api")) .Release.Namespace .Values.quotaApi.service.port -}}
{{- end -}}
{{- end -}}

{{/*
The token Gantry's writers send to the quota API: projected for the audience gantry-quota-api
(quota-api/src/kube_auth.rs AUDIENCE), so the API server refuses it for anything else and one seen
on the pod network opens nothing but the quota API. Rotated by the kubelet; read at every send.
*/}}
{{- define "gantry.quotaApiTokenMount" -}}
- {name: quota-api-token, mountPath: /var/run/secrets/gantry/quota-api, readOnly: true}
{{- end -}}

{{- define "gantry.quotaApiTokenVolume" -}}
- name: quota-api-token
  projected:
    sources:
      - serviceAccountToken: {audience: gantry-quota-api, expirationSeconds: 3600, path: token}
{{- end -}}

{{/* Pod and container security contexts: non-root, read-only root, nothing to escalate. */}}
{{- define "gantry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "gantry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "gantry.nodeAgentSecurityContext" -}}
# The one exception to non-root: the kubelet's pod-resources socket is root-owned in
# a 0700 directory. Nothing else is granted: no privilege, no capabilities, and NVML
# needs no more than the devices the NVIDIA runtime gives.
runAsUser: 0
runAsNonRoot: false
{{ include "gantry.containerSecurityContext" . }}
{{- end -}}

{{/* Scheduling constraints of a component's pods: nodeSelector, tolerations, affinity, spread. */}}
{{- define "gantry.placement" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
{{- $selector := fromYaml (include "gantry.selectorLabels" .) }}
{{- $spread := list }}
{{- range .values.topologySpreadConstraints }}
{{- $t := deepCopy . }}
{{- if not (hasKey $t "labelSelector") }}
{{- $_ := set $t "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $spread = append $spread $t }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $spread | nindent 2 }}
{{- else if gt (int (default 1 .values.replicas)) 1 }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "gantry.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/*
A component's PriorityClass: its priorityClassName, else the chart's own class when
priorityClass.create is set, else none.
*/}}
{{- define "gantry.priorityClassName" -}}
{{- if .values.priorityClassName -}}
{{- .values.priorityClassName -}}
{{- else if .root.Values.priorityClass.create -}}
{{- printf "%s-critical" (include "gantry.fullname" .root) -}}
{{- end -}}
{{- end -}}

{{/*
A securityContext: the chart's defaults (text), with the user's override (a map) merged over them
key by key, and one level down (capabilities: {add: [...]} keeps drop: [ALL]). A key the override
sets, false and 0 included, replaces the default's; every other default stays. Without an
override, the defaults' text as it is.
*/}}
{{- define "gantry.securityContext" -}}
{{- if .override -}}
{{- $out := fromYaml .defaults -}}
{{- range $k, $v := .override -}}
{{- $d := get $out $k -}}
{{- if and (kindIs "map" $v) (kindIs "map" $d) -}}
{{- $inner := deepCopy $d -}}
{{- range $k2, $v2 := $v }}{{ $_ := set $inner $k2 $v2 }}{{ end -}}
{{- $_ := set $out $k $inner -}}
{{- else -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- else -}}
{{- .defaults -}}
{{- end -}}
{{- end -}}

{{/* The user's podLabels (as YAML, or nothing), less any key the chart's own labels have. */}}
{{- define "gantry.podLabels" -}}
{{- $own := fromYaml (include "gantry.labels" .) -}}
{{- $extra := dict -}}
{{- range $k, $v := .values.podLabels -}}
{{- if not (hasKey $own $k) }}{{ $_ := set $extra $k $v }}{{ end -}}
{{- end -}}
{{- if $extra }}{{ toYaml $extra }}{{ end -}}
{{- end -}}

{{/* The user's podAnnotations (as YAML, or nothing), less the chart's checksum/* ones. */}}
{{- define "gantry.podAnnotations" -}}
{{- $extra := dict -}}
{{- range $k, $v := .values.podAnnotations -}}
{{- if not (hasPrefix "checksum/" $k) }}{{ $_ := set $extra $k $v }}{{ end -}}
{{- end -}}
{{- if $extra }}{{ toYaml $extra }}{{ end -}}
{{- end -}}

{{/* RUST_LOG for a Gantry container (an env entry, or nothing): the binary's log filter. */}}
{{- define "gantry.logEnv" -}}
{{- with .Values.logLevel -}}
- name: RUST_LOG
  value: {{ . | quote }}
{{- end -}}
{{- end -}}

{{/* A PodDisruptionBudget keeping one pod of a replicated component through drains. */}}
{{- define "gantry.pdb" -}}
{{- if and .values.podDisruptionBudget.enabled (gt (int .values.replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "gantry.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gantry.labels" . | nindent 4 }}
spec:
  minAvailable: {{ .values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "gantry.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
A NetworkPolicy letting in only `from` peers on `port` (and metrics scrapers on `metricsPort`).
Egress is left open: the API server's address cannot be selected portably.
*/}}
{{- define "gantry.networkPolicy" -}}
{{- if .root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "gantry.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gantry.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "gantry.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    {{- if .port }}
    - ports:
        - {port: {{ .port }}, protocol: TCP}
      {{- if .from }}
      from:
        {{- toYaml .from | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- if and .metricsPort .root.Values.networkPolicy.metricsFrom }}
    - ports:
        - {port: {{ .metricsPort }}, protocol: TCP}
      from:
        {{- toYaml .root.Values.networkPolicy.metricsFrom | nindent 8 }}
    {{- end }}
{{- end }}
{{- end -}}
