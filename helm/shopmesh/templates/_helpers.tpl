{{/* Names, labels and the values every template derives from the per-service list. */}}

{{- define "shopmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shopmesh.fullname" -}}
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

{{/* Labels on every object; "component" names the service or store. */}}
{{- define "shopmesh.labels" -}}
{{- $root := .root -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: shopmesh
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
{{ include "shopmesh.selectorLabels" . }}
{{- end -}}

{{- define "shopmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shopmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* <fullname>-<component>: the name of a service's or store's objects. */}}
{{- define "shopmesh.componentName" -}}
{{- printf "%s-%s" (include "shopmesh.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shopmesh.image" -}}
{{- $root := .root -}}
{{- $override := index ($root.Values.images | default dict) .svc.name -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- printf "%s/%s:%s" $root.Values.image.repository .svc.name (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether gRPC callers use the headless Service (true) or the ClusterIP one. */}}
{{- define "shopmesh.useHeadless" -}}
{{- $mode := .Values.grpcAddressing -}}
{{- if eq $mode "headless" -}}true
{{- else if eq $mode "clusterIP" -}}false
{{- else if .Values.mesh.enabled -}}false
{{- else -}}true
{{- end -}}
{{- end -}}

{{/* The gRPC address of a service, for <NAME>_ADDR. */}}
{{- define "shopmesh.grpcAddress" -}}
{{- $root := .root -}}
{{- $host := printf "%s.%s.svc.cluster.local" (include "shopmesh.componentName" (dict "root" $root "component" .svc.name)) $root.Release.Namespace -}}
{{- if eq (include "shopmesh.useHeadless" $root) "true" -}}
{{- printf "dns:///%s.%s.svc.cluster.local:%d" (printf "%s-headless" (include "shopmesh.componentName" (dict "root" $root "component" .svc.name))) $root.Release.Namespace (int .svc.port) -}}
{{- else -}}
{{- printf "%s:%d" $host (int .svc.port) -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc.cluster.local:4222" (include "shopmesh.componentName" (dict "root" . "component" "nats")) .Release.Namespace -}}
{{- else -}}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.otlpEndpoint" -}}
{{- if .Values.jaeger.enabled -}}
{{- printf "http://%s.%s.svc.cluster.local:4317" (include "shopmesh.componentName" (dict "root" . "component" "jaeger")) .Release.Namespace -}}
{{- else -}}
{{- .Values.jaeger.otlpEndpoint -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.postgresHost" -}}
{{- if .Values.postgres.enabled -}}
{{- printf "%s.%s.svc.cluster.local" (include "shopmesh.componentName" (dict "root" . "component" "postgres")) .Release.Namespace -}}
{{- else -}}
{{- .Values.externalPostgres.host -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.postgresPort" -}}
{{- if .Values.postgres.enabled -}}5432{{- else -}}{{ .Values.externalPostgres.port }}{{- end -}}
{{- end -}}

{{/* Whether the chart generates the service roles (in-cluster server, or an external one with an admin Secret). */}}
{{- define "shopmesh.managesDatabases" -}}
{{- if or .Values.postgres.enabled .Values.externalPostgres.adminSecret -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/* Role and database name of a service. */}}
{{- define "shopmesh.dbName" -}}
{{- printf "%s%s" .root.Values.postgres.databasePrefix .svc.name | replace "-" "_" -}}
{{- end -}}

{{/* The Secret and key holding a service's DATABASE_URL. */}}
{{- define "shopmesh.databaseSecretRef" -}}
{{- if .svc.databaseSecret -}}
name: {{ .svc.databaseSecret.name }}
key: {{ .svc.databaseSecret.key | default "url" }}
{{- else if eq (include "shopmesh.managesDatabases" .root) "true" -}}
name: {{ include "shopmesh.componentName" (dict "root" .root "component" (printf "%s-db" .svc.name)) }}
key: url
{{- else -}}
{{- fail (printf "services[%s]: postgres.enabled is false and neither externalPostgres.adminSecret nor databaseSecret is set" .svc.name) -}}
{{- end -}}
{{- end -}}

{{/*
A value kept across upgrades: the existing Secret's key when the release already has
it (lookup; empty under `helm template`), else random.
*/}}
{{- define "shopmesh.persistentSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int (default 32 .length)) -}}
{{- end -}}
{{- end -}}

{{/* The pod securityContext from values; "uid" (optional) runs it as an image's own user. */}}
{{- define "shopmesh.podSecurityContext" -}}
{{- $sc := deepCopy .root.Values.podSecurityContext -}}
{{- if .uid -}}
{{- $_ := mergeOverwrite $sc (dict "runAsUser" .uid "runAsGroup" .uid "fsGroup" .uid) -}}
{{- end -}}
{{ toYaml $sc }}
{{- end -}}

{{/* The container securityContext from values; "uid" (optional) as above. */}}
{{- define "shopmesh.containerSecurityContext" -}}
{{- $sc := deepCopy .root.Values.containerSecurityContext -}}
{{- if .uid -}}
{{- $_ := mergeOverwrite $sc (dict "runAsUser" .uid "runAsGroup" .uid) -}}
{{- end -}}
{{ toYaml $sc }}
{{- end -}}

{{/* Soft spread over nodes and zones (a pod spec's topologySpreadConstraints). */}}
{{- define "shopmesh.topologySpread" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "shopmesh.selectorLabels" . | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "shopmesh.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* The principal of a service's ServiceAccount in the mesh. */}}
{{- define "shopmesh.principal" -}}
{{- printf "%s/ns/%s/sa/%s" .root.Values.mesh.trustDomain .root.Release.Namespace (include "shopmesh.componentName" (dict "root" .root "component" .name)) -}}
{{- end -}}
