{{/* Chart name, or nameOverride. */}}
{{- define "tokenwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: fullnameOverride, or the release name
plus the chart name unless the release name already contains it. */}}
{{- define "tokenwarden.fullname" -}}
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

{{- define "tokenwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the manager Pods. */}}
{{- define "tokenwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller-manager
{{- end }}

{{/* Labels of every object. */}}
{{- define "tokenwarden.labels" -}}
{{ include "tokenwarden.selectorLabels" . }}
app.kubernetes.io/part-of: tokenwarden
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "tokenwarden.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tokenwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tokenwarden.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tokenwarden.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The rules of a Role or ClusterRole of config/rbac, copied into
files/rbac/ by `make helm-crds` (test/chart fails when a copy is stale):
role.yaml is generated from the RBAC markers by `make manifests`, so new
kinds reach the chart without editing a template.
Usage: include "tokenwarden.rules" (list $ "role.yaml") */}}
{{- define "tokenwarden.rules" -}}
{{- $root := index . 0 }}
{{- $file := printf "files/rbac/%s" (index . 1) }}
{{- $role := $root.Files.Get $file | fromYaml }}
{{- if not $role.rules }}
{{- fail (printf "%s holds no rules; run make helm-crds" $file) }}
{{- end }}
{{- toYaml $role.rules }}
{{- end }}

{{/* Checks of values that the schema cannot express. */}}
{{- define "tokenwarden.validate" -}}
{{- if and (eq .Values.installMode "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "watchNamespaces: namespaced mode needs at least one namespace" }}
{{- end }}
{{- if and (eq .Values.installMode "cluster") (not (empty .Values.watchNamespaces)) }}
{{- fail "watchNamespaces: set installMode=namespaced to watch only some namespaces (cluster mode watches all)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "leaderElection.enabled: more than one replica (replicaCount) needs leader election, or they would all reconcile" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (empty .Values.networkPolicy.apiServerCIDRs) }}
{{- fail "networkPolicy.apiServerCIDRs: the API server endpoint addresses are required with networkPolicy.enabled (kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes)" }}
{{- end }}
{{- end }}
