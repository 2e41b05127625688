{{/* Chart name. */}}
{{- define "deliver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: RELEASE-deliver, or RELEASE when it already contains the chart name. */}}
{{- define "deliver.fullname" -}}
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

{{- define "deliver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deliver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deliver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "deliver.labels" -}}
helm.sh/chart: {{ include "deliver.chart" . }}
{{ include "deliver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "deliver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deliver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace watched in namespaced mode. */}}
{{- define "deliver.watchNamespace" -}}
{{- default .Release.Namespace .Values.watch.namespace }}
{{- end }}

{{/*
The rules the controller needs on the resources it touches; nothing else. Where each verb is used:
  deployments  get (reconcile), list+watch (informer), patch (state record, spec.paused, template on rollback)
  replicasets  get, list+watch (informer, observe), create (canary/preview ReplicaSet),
               patch (scale, adopt), delete (rollback, cleanup)
  pods         list+watch (informer cache: health of each version)
  services     get, create, patch (stable/canary, preview/active Services, blue-green switch),
               list+watch (informer cache), delete (unpin/remove them when deliver.dev/strategy is removed)
  poddisruptionbudgets list+watch (informer cache: exact canary shares)
  events       create (Kubernetes Events on the Deployment)
  configmaps   get (custom analysis queries, deliver.dev/analysis-config)
  routers      get + patch on the route object (nginx: also create the canary Ingress)
*/}}
{{- define "deliver.rules" -}}
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# exact canary shares read the PodDisruptionBudgets that select the pods (deliver.dev/canary-scale)
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch"]
{{- if .Values.routers.gatewayApi }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
{{- end }}
{{- if .Values.routers.nginx }}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch"]
{{- end }}
{{- if .Values.routers.istio }}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch"]
{{- end }}
{{- if .Values.routers.smi }}
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "patch"]
{{- end }}
{{- end }}

{{/* The Secret the controller reads notification URLs from: the user's, or the chart's own. */}}
{{- define "deliver.notificationsSecret" -}}
{{- default (printf "%s-notifications" (include "deliver.fullname" .)) .Values.notifications.existingSecret.name }}
{{- end }}

{{/* The chart's own Secret data: the URLs, space-separated. */}}
{{- define "deliver.notificationsData" -}}
webhooks: {{ join " " .Values.notifications.webhooks | b64enc | quote }}
slack: {{ join " " .Values.notifications.slack | b64enc | quote }}
{{- end }}

{{/* The controller image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "deliver.image" -}}
{{- with .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" .) -}}
{{- fail (printf "image.digest must be sha256: and 64 hex digits, not %q" .) -}}
{{- end -}}
{{- printf "%s@%s" $.Values.image.repository . -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
