{{/* The image of the webhook (and, by default, of the injected containers). */}}
{{- define "warden.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The labels deploy/webhook gives every object, and the chart's own. */}}
{{- define "warden.labels" -}}
app.kubernetes.io/name: warden-webhook
app.kubernetes.io/part-of: warden
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The webhook's Service DNS name, which its certificate names. */}}
{{- define "warden.serviceDNS" -}}
warden-webhook.{{ .Release.Namespace }}.svc
{{- end -}}

{{/*
The self-signed mode's CA and serving certificate, as YAML (ca, crt, key:
PEM). Kept from the Secret of an earlier install when there is one (lookup
sees nothing under `helm template`), else generated. Generated once per
render: the result is memoized in .Values, which every template of a
render shares, so that the Secret, the caBundle and the pod annotation
agree whichever template asks first.
*/}}
{{- define "warden.tls" -}}
{{- if not (hasKey .Values "_wardenTLS") -}}
{{- $tls := dict -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace "warden-webhook-tls" -}}
{{- if and $old $old.data (hasKey $old.data "ca.crt") -}}
{{- $tls = dict "ca" (index $old.data "ca.crt" | b64dec) "crt" (index $old.data "tls.crt" | b64dec) "key" (index $old.data "tls.key" | b64dec) -}}
{{- else -}}
{{- $dns := include "warden.serviceDNS" . -}}
{{- $ca := genCA "warden-webhook-ca" 3650 -}}
{{- $cert := genSignedCert $dns nil (list $dns (printf "%s.cluster.local" $dns)) 3650 $ca -}}
{{- $tls = dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key -}}
{{- end -}}
{{- $_ := set .Values "_wardenTLS" $tls -}}
{{- end -}}
{{- toYaml .Values._wardenTLS -}}
{{- end -}}
