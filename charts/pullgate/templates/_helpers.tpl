{{/*
Names. Everything the chart creates is named after pullgate.fullname.
*/}}
{{- define "pullgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pullgate.fullname" -}}
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

{{- define "pullgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "pullgate.labels" -}}
helm.sh/chart: {{ include "pullgate.chart" . }}
{{ include "pullgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pullgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the pullgate pods. Never change them: Deployment selectors are immutable. */}}
{{- define "pullgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "pullgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pullgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The two webhook configurations (cluster-scoped). pullgate, the RBAC and the pre-delete hook all use these names. */}}
{{- define "pullgate.mutatingWebhookName" -}}
{{- printf "%s-mutating" (include "pullgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pullgate.validatingWebhookName" -}}
{{- printf "%s-validating" (include "pullgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Secret holding the serving certificate in every mode. */}}
{{- define "pullgate.tlsSecretName" -}}
{{- $c := .Values.certificates -}}
{{- if eq $c.mode "existingSecret" -}}
{{- $c.existingSecret.name -}}
{{- else if eq $c.mode "selfSigned" -}}
{{- default (printf "%s-tls" (include "pullgate.fullname" .)) $c.selfSigned.secretName -}}
{{- else -}}
{{- printf "%s-tls" (include "pullgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The serving certificate's cert-manager Certificate (certManager mode). */}}
{{- define "pullgate.servingCertificateName" -}}
{{- printf "%s-serving" (include "pullgate.fullname" .) -}}
{{- end -}}

{{/* Image references: a digest wins over a tag. */}}
{{- define "pullgate.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Whether the pullgate container talks to the API server, and so needs a ServiceAccount token:
cluster mode (watches), selfSigned (keeps its Secret, patches the caBundle) and the reconciler.
*/}}
{{- define "pullgate.needsApi" -}}
{{- if or .Values.cluster.enabled (eq .Values.certificates.mode "selfSigned") .Values.reconciler.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* The policy file, rendered from .Values.policy. Empty optional keys are left out. */}}
{{- define "pullgate.policy" -}}
{{- $p := .Values.policy -}}
{{- $policy := dict
      "inject" $p.inject
      "validation" $p.validation
      "registries" (dict "private" $p.registries.private "public" $p.registries.public)
      "namespaces" (dict "exclude" $p.namespaces.exclude) -}}
{{- if $p.maxSecretAge -}}
{{- $_ := set $policy "maxSecretAge" $p.maxSecretAge -}}
{{- end -}}
{{- if .Values.reconciler.enabled -}}
{{- $_ := set $policy "reconcile" (dict "serviceAccounts" true "selector" .Values.reconciler.selector) -}}
{{- end -}}
{{- $v := $p.verify -}}
{{- $verify := dict
      "enabled" $v.enabled
      "interval" $v.interval
      "timeout" $v.timeout
      "deny" $v.deny
      "registries" $v.registries -}}
{{- if $v.probeRepository -}}
{{- $_ := set $verify "probeRepository" $v.probeRepository -}}
{{- end -}}
{{- $_ := set $policy "verify" $verify -}}
{{- $a := $p.attribution -}}
{{- $_ := set $policy "attribution" (dict
      "enabled" $a.enabled
      "eventsPerSecond" (int64 $a.eventsPerSecond)
      "restartStuckPods" $a.restartStuckPods
      "maxRestartPercent" (int64 $a.maxRestartPercent)
      "restartsPerMinute" (int64 $a.restartsPerMinute)) -}}
{{- /* Only when on: the policy's own defaults are the audit off. */ -}}
{{- $au := .Values.audit -}}
{{- if $au.enabled -}}
{{- $_ := set $policy "audit" (dict
      "enabled" true
      "interval" $au.interval
      "reports" $au.reports
      "protectInUseSecrets" $au.protectInUseSecrets) -}}
{{- end -}}
{{- toYaml $policy -}}
{{- end -}}

{{/*
Namespaces the webhooks never see: kube-system and kube-node-lease (cluster plumbing), the release
namespace (so pullgate's own pods can always start, whatever the failurePolicy), the policy's exclusions
and any extra ones.
*/}}
{{- define "pullgate.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-node-lease" .Release.Namespace -}}
{{- $ns = concat $ns .Values.policy.namespaces.exclude .Values.webhooks.namespaceSelector.excludeNamespaces -}}
{{- toYaml (uniq $ns) -}}
{{- end -}}

{{/*
namespaceSelector of one webhook. Argument: dict "root" $ "label" <namespace label> "off" <value that turns it off>.
A namespace labelled off for this webhook's job is not sent to pullgate at all.
*/}}
{{- define "pullgate.namespaceSelector" -}}
{{- $root := .root -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- include "pullgate.excludedNamespaces" $root | nindent 6 }}
  - key: {{ .label }}
    operator: NotIn
    values: [{{ .off | quote }}]
{{- with $root.Values.webhooks.namespaceSelector.matchExpressions }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* objectSelector of every webhook: the opt-out label plus extra requirements. */}}
{{- define "pullgate.objectSelector" -}}
matchExpressions:
  - key: pullgate.io/ignore
    operator: NotIn
    values: ["true"]
{{- with .Values.webhooks.objectSelector.matchExpressions }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* clientConfig of one webhook. Argument: dict "root" $ "path" "/mutate" "caBundle" <base64 or empty>. */}}
{{- define "pullgate.clientConfig" -}}
{{- $root := .root -}}
service:
  name: {{ include "pullgate.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ .path }}
  port: {{ $root.Values.service.port }}
{{- with .caBundle }}
caBundle: {{ . }}
{{- end }}
{{- end -}}

{{/*
caBundle for both webhook configurations, base64 of a PEM.
- existingSecret: the PEM from the values.
- selfSigned: pullgate patches the caBundle at run time; on upgrade the one already in the cluster is
  kept (lookup), so a new or re-rendered webhook never goes back to an empty caBundle.
- certManager: none; cainjector fills it from the annotation.
*/}}
{{- define "pullgate.caBundle" -}}
{{- $mode := .Values.certificates.mode -}}
{{- if eq $mode "existingSecret" -}}
{{- .Values.certificates.existingSecret.caBundle | trim | b64enc -}}
{{- else if eq $mode "selfSigned" -}}
{{- $bundle := "" -}}
{{- range $kind, $name := dict "MutatingWebhookConfiguration" (include "pullgate.mutatingWebhookName" .) "ValidatingWebhookConfiguration" (include "pullgate.validatingWebhookName" .) -}}
{{- if not $bundle -}}
{{- $existing := lookup "admissionregistration.k8s.io/v1" $kind "" $name -}}
{{- range $wh := (dig "webhooks" (list) $existing) -}}
{{- if and (not $bundle) (dig "clientConfig" "caBundle" "" $wh) -}}
{{- $bundle = $wh.clientConfig.caBundle -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $bundle -}}
{{- end -}}
{{- end -}}

{{/* failurePolicy of one configuration. Argument: the per-configuration override ("" inherits). */}}
{{- define "pullgate.failurePolicy" -}}
{{- default .root.Values.webhooks.failurePolicy .override -}}
{{- end -}}

{{/* CEL: the object is not a mirror pod (static pods from a node; rejecting them stops nothing). */}}
{{- define "pullgate.celNotMirrorPod" -}}
!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)
{{- end -}}

{{/* CEL: a CREATE, or an UPDATE that changed the spec (label and annotation churn is not sent). */}}
{{- define "pullgate.celSpecChanged" -}}
request.operation != 'UPDATE' || object.spec != oldObject.spec
{{- end -}}

{{/* The hardened container securityContext shared by pullgate and the hook Job. */}}
{{- define "pullgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pullgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
