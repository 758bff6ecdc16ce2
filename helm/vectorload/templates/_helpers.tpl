{{/* Chart name, possibly overridden. */}}
{{- define "vectorload.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name prefix of every resource. */}}
{{- define "vectorload.fullname" -}}
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

{{- define "vectorload.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "vectorload.labels" -}}
helm.sh/chart: {{ include "vectorload.chart" . }}
app.kubernetes.io/name: {{ include "vectorload.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vectorload
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" . "component" "operator"). */}}
{{- define "vectorload.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vectorload.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects. */}}
{{- define "vectorload.componentLabels" -}}
{{ include "vectorload.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vectorload.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "vectorload.operatorName" -}}
{{- printf "%s-operator" (include "vectorload.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vectorload.querynodeName" -}}
{{- printf "%s-querynode" (include "vectorload.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "vectorload.querynodeHeadlessName" -}}
{{- printf "%s-headless" (include "vectorload.querynodeName" .) }}
{{- end }}

{{/* Cluster-scoped objects carry the release namespace: two releases of one name in two namespaces must not collide. */}}
{{- define "vectorload.clusterName" -}}
{{- printf "%s-%s-operator" .Release.Namespace (include "vectorload.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vectorload.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "vectorload.operatorName" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vectorload.tokenSecretName" -}}
{{- default (printf "%s-token" (include "vectorload.fullname" .)) .Values.token.existingSecret }}
{{- end }}

{{- define "vectorload.dataTokenSecretName" -}}
{{- default (printf "%s-data-token" (include "vectorload.fullname" .)) .Values.dataToken.existingSecret }}
{{- end }}

{{/* Namespaces a namespace-scoped operator watches (JSON list): operator.watchNamespace and the
     release namespace, where this release's querynode pods live (kopf watches pods only in the
     namespaces it serves). */}}
{{- define "vectorload.watchNamespaces" -}}
{{- $namespaces := list .Values.operator.watchNamespace }}
{{- if ne .Values.operator.watchNamespace .Release.Namespace }}
{{- $namespaces = append $namespaces .Release.Namespace }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}

{{- define "vectorload.querynodeSelector" -}}
{{- default (printf "app.kubernetes.io/component=querynode,app.kubernetes.io/instance=%s" .Release.Name) .Values.operator.querynodeSelector }}
{{- end }}

{{/* Token volume and mount, shared by the operator and the querynodes. */}}
{{- define "vectorload.tokenVolume" -}}
- name: token
  secret:
    secretName: {{ include "vectorload.tokenSecretName" . }}
    defaultMode: 0440
    items:
      - key: token
        path: token
{{- end }}

{{- define "vectorload.tokenMount" -}}
- name: token
  mountPath: /var/run/vectorload/token
  readOnly: true
{{- end }}

{{- define "vectorload.tokenFile" -}}
/var/run/vectorload/token/token
{{- end }}

{{/* Data-token volume and mount (querynodes). */}}
{{- define "vectorload.dataTokenVolume" -}}
- name: data-token
  secret:
    secretName: {{ include "vectorload.dataTokenSecretName" . }}
    defaultMode: 0440
    items:
      - key: token
        path: token
{{- end }}

{{- define "vectorload.dataTokenMount" -}}
- name: data-token
  mountPath: /var/run/vectorload/data-token
  readOnly: true
{{- end }}

{{- define "vectorload.dataTokenFile" -}}
/var/run/vectorload/data-token/token
{{- end }}

{{/* Guards that a values schema cannot express. */}}
{{- define "vectorload.validate" -}}
{{- if and .Values.storage.existingClaim .Values.storage.hostPath }}
{{- fail "storage: set at most one of storage.existingClaim and storage.hostPath" }}
{{- end }}
{{- if not (and .Values.querynode.resources.limits .Values.querynode.resources.limits.memory) }}
{{- fail "querynode.resources.limits.memory is required: it is the querynode's memory capacity" }}
{{- end }}
{{- if and .Values.storage.hostPath (not (hasPrefix "/" .Values.storage.hostPath)) }}
{{- fail "storage.hostPath must be an absolute path" }}
{{- end }}
{{- end }}

{{- /* Rules the operator needs wherever it serves CollectionLoads: exactly the calls of kopf 1.45
     and of vectorload_operator (README.md explains each). */}}
{{- define "vectorload.watchRules" -}}
- apiGroups: ["vectorload.io"]
  resources: ["collectionloads"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["vectorload.io"]
  resources: ["collectionloads/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end }}
{{- define "vectorload.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* The proxy (Milvus front door): names, its credentials Secret, the namespaces it serves. */}}
{{- define "vectorload.proxyName" -}}
{{- printf "%s-proxy" (include "vectorload.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vectorload.proxyCredentialsSecretName" -}}
{{- default (printf "%s-proxy-credentials" (include "vectorload.fullname" .)) .Values.proxy.credentials.existingSecret }}
{{- end }}

{{- define "vectorload.proxyCredentialsFile" -}}
/var/run/vectorload/credentials/credentials
{{- end }}

{{/* Namespaces the proxy serves as Milvus databases (JSON list, release namespace first): the
     release namespace (`default`), operator.watchNamespace and proxy.watchNamespaces. */}}
{{- define "vectorload.proxyNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- if .Values.operator.watchNamespace }}
{{- $namespaces = append $namespaces .Values.operator.watchNamespace }}
{{- end }}
{{- range .Values.proxy.watchNamespaces }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- toJson ($namespaces | uniq) }}
{{- end }}

{{- /* What the proxy does with CollectionLoads: LoadCollection/LoadPartitions create or patch
     one, ReleaseCollection deletes it, GetLoadState/GetLoadingProgress/GetReplicas read its status. */}}
{{- define "vectorload.proxyCollectionLoadRules" -}}
- apiGroups: ["vectorload.io"]
  resources: ["collectionloads"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["vectorload.io"]
  resources: ["collectionloads/status"]
  verbs: ["get"]
{{- end }}

{{- /* Where the querynodes are (their pod IPs, readiness): read-only. */}}
{{- define "vectorload.proxyPodRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
{{- end }}
