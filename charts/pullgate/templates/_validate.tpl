{{/*
Contradictions between values that values.schema.json cannot express. Each one stops the render with
the value to change. Included once, from deployment.yaml.
*/}}
{{- define "pullgate.validate" -}}
{{- $v := .Values -}}
{{- $c := $v.certificates -}}

{{- /* Certificates */ -}}
{{- if eq $c.mode "existingSecret" -}}
  {{- if not $c.existingSecret.name -}}
    {{- fail "certificates.mode=existingSecret needs certificates.existingSecret.name: the kubernetes.io/tls Secret with tls.crt and tls.key" -}}
  {{- end -}}
  {{- if not (trim $c.existingSecret.caBundle) -}}
    {{- fail "certificates.mode=existingSecret needs certificates.existingSecret.caBundle: the PEM of the CA that signed the certificate; without it the API server cannot trust pullgate" -}}
  {{- end -}}
  {{- if not (contains "-----BEGIN CERTIFICATE-----" $c.existingSecret.caBundle) -}}
    {{- fail "certificates.existingSecret.caBundle must be PEM (-----BEGIN CERTIFICATE-----), not base64: the chart encodes it" -}}
  {{- end -}}
{{- else -}}
  {{- if or $c.existingSecret.name $c.existingSecret.caBundle -}}
    {{- fail (printf "certificates.existingSecret.* is set but certificates.mode is %s: set mode=existingSecret or clear existingSecret" $c.mode) -}}
  {{- end -}}
{{- end -}}
{{- if and (ne $c.mode "certManager") $c.certManager.issuerRef.name -}}
  {{- fail (printf "certificates.certManager.issuerRef.name is set but certificates.mode is %s: set mode=certManager or clear issuerRef.name" $c.mode) -}}
{{- end -}}
{{- if and (ne $c.mode "selfSigned") $c.selfSigned.secretName -}}
  {{- fail (printf "certificates.selfSigned.secretName is set but certificates.mode is %s" $c.mode) -}}
{{- end -}}

{{- /* Audit */ -}}
{{- if and $v.audit.enabled (not $v.cluster.enabled) -}}
  {{- fail "audit.enabled needs cluster.enabled=true: the audit reads pull secrets, ServiceAccounts and workloads through the API" -}}
{{- end -}}
{{- if and $v.audit.protectInUseSecrets (not $v.audit.enabled) -}}
  {{- fail "audit.protectInUseSecrets needs audit.enabled=true: the answer comes from the last audit" -}}
{{- end -}}
{{- if and $v.audit.protectInUseSecrets (not $v.webhooks.validating.enabled) -}}
  {{- fail "audit.protectInUseSecrets needs webhooks.validating.enabled=true: deletions are answered by the validating webhook" -}}
{{- end -}}

{{- /* Webhooks and policy */ -}}
{{- if not (or $v.webhooks.mutating.enabled $v.webhooks.validating.enabled) -}}
  {{- fail "webhooks.mutating.enabled and webhooks.validating.enabled are both false: pullgate would never be called" -}}
{{- end -}}
{{- if and (eq $v.policy.validation "deny") (not $v.webhooks.validating.enabled) -}}
  {{- fail "policy.validation=deny needs webhooks.validating.enabled=true: denials come from the validating webhook" -}}
{{- end -}}
{{- if and $v.policy.inject (not $v.webhooks.mutating.enabled) -}}
  {{- fail "policy.inject=true needs webhooks.mutating.enabled=true: injection happens in the mutating webhook (set policy.inject=false to validate only)" -}}
{{- end -}}
{{- if ge (int $v.server.requestTimeoutSeconds) (int $v.webhooks.timeoutSeconds) -}}
  {{- fail (printf "server.requestTimeoutSeconds (%d) must be below webhooks.timeoutSeconds (%d): otherwise the API server gives up before pullgate answers and failurePolicy decides every slow request" (int $v.server.requestTimeoutSeconds) (int $v.webhooks.timeoutSeconds)) -}}
{{- end -}}
{{- if ge (add (int $v.server.shutdownGracePeriodSeconds) (int $v.server.shutdownDelaySeconds)) (int $v.terminationGracePeriodSeconds) -}}
  {{- fail (printf "server.shutdownDelaySeconds + server.shutdownGracePeriodSeconds (%d) must be below terminationGracePeriodSeconds (%d): the kubelet would kill pullgate while it drains" (add (int $v.server.shutdownGracePeriodSeconds) (int $v.server.shutdownDelaySeconds)) (int $v.terminationGracePeriodSeconds)) -}}
{{- end -}}
{{- if eq (int $v.server.port) (int $v.server.metricsPort) -}}
  {{- fail "server.port and server.metricsPort must differ" -}}
{{- end -}}

{{- /* API access */ -}}
{{- if and $v.reconciler.enabled (not $v.cluster.enabled) -}}
  {{- fail "reconciler.enabled=true needs cluster.enabled=true: the reconciler works from the watched ServiceAccounts and Secrets" -}}
{{- end -}}
{{- if and $v.policy.verify.enabled (not $v.cluster.enabled) -}}
  {{- fail "policy.verify.enabled=true needs cluster.enabled=true: pullgate verifies the pull secrets it watches, reading their credentials from the API at probe time" -}}
{{- end -}}
{{- if and $v.policy.attribution.enabled (not $v.cluster.enabled) -}}
  {{- fail "policy.attribution.enabled=true needs cluster.enabled=true: attribution watches the kubelet's pull-failure Events and diagnoses them against the watched pull secrets" -}}
{{- end -}}
{{- if and $v.policy.attribution.restartStuckPods (not $v.policy.attribution.enabled) -}}
  {{- fail "policy.attribution.restartStuckPods=true needs policy.attribution.enabled=true: stuck pods are found by attribution" -}}
{{- end -}}
{{- if and $v.verifyCaBundles (not $v.policy.verify.enabled) -}}
  {{- fail "verifyCaBundles is set but policy.verify.enabled is false: the CA bundles are only read by credential verification" -}}
{{- end -}}
{{- range $i, $r := $v.policy.verify.registries -}}
  {{- if and $r.caFile (hasPrefix "/etc/pullgate/ca/" $r.caFile) (not $v.verifyCaBundles) -}}
    {{- fail (printf "policy.verify.registries[%d].caFile is %s but verifyCaBundles is empty: nothing is mounted in /etc/pullgate/ca/ (name the ConfigMap or Secret that holds it in verifyCaBundles)" $i $r.caFile) -}}
  {{- end -}}
{{- end -}}
{{- if and $v.cluster.watchNamespaces (not $v.cluster.enabled) -}}
  {{- fail "cluster.watchNamespaces is set but cluster.enabled is false" -}}
{{- end -}}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) -}}
  {{- fail "serviceAccount.create=false needs serviceAccount.name" -}}
{{- end -}}

{{- /* Availability */ -}}
{{- if and $v.podDisruptionBudget.enabled (ne (toString $v.podDisruptionBudget.minAvailable) "") -}}
  {{- $min := toString $v.podDisruptionBudget.minAvailable -}}
  {{- if and (not (hasSuffix "%" $min)) (ge (atoi $min) (int $v.replicaCount)) -}}
    {{- fail (printf "podDisruptionBudget.minAvailable (%s) must be below replicaCount (%d): the budget would block every node drain" $min (int $v.replicaCount)) -}}
  {{- end -}}
{{- end -}}
{{- if and $v.hostNetwork (eq $v.podAntiAffinity "none") (gt (int $v.replicaCount) 1) (not $v.affinity) -}}
  {{- fail "hostNetwork=true with podAntiAffinity=none: two replicas on one node would fight over server.port; use podAntiAffinity=hard" -}}
{{- end -}}

{{- /* NetworkPolicy */ -}}
{{- if $v.networkPolicy.enabled -}}
  {{- if not (or $v.networkPolicy.apiServer.cidrs $v.networkPolicy.apiServer.peers) -}}
    {{- fail "networkPolicy.enabled=true needs networkPolicy.apiServer.cidrs or .peers: a policy without them blocks the API server, and every admission then follows failurePolicy" -}}
  {{- end -}}
  {{- if and $v.metrics.serviceMonitor.enabled (not $v.networkPolicy.metrics.peers) -}}
    {{- fail "metrics.serviceMonitor.enabled=true with networkPolicy.enabled=true needs networkPolicy.metrics.peers: otherwise Prometheus cannot scrape" -}}
  {{- end -}}
{{- end -}}

{{- /* Alerts */ -}}
{{- if le (int $v.metrics.prometheusRule.certExpiryWarningDays) (int $v.metrics.prometheusRule.certExpiryCriticalDays) -}}
  {{- fail "metrics.prometheusRule.certExpiryWarningDays must be above certExpiryCriticalDays" -}}
{{- end -}}
{{- end -}}
