{{/* Labels every object carries. */}}
{{- define "medfoundry.commonLabels" -}}
app.kubernetes.io/part-of: medfoundry
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "medfoundry.labels" -}}
{{ include "medfoundry.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "mlflow"). */}}
{{- define "medfoundry.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{- define "medfoundry.componentLabels" -}}
{{ include "medfoundry.commonLabels" .ctx }}
{{ include "medfoundry.selector" . }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A medfoundry image: include with (dict "ctx" $ "kind" "cpu"). */}}
{{- define "medfoundry.image" -}}
{{- $tag := .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s/medfoundry-%s:%s" .ctx.Values.image.registry .kind $tag -}}
{{- end }}

{{- define "medfoundry.s3Secret" -}}
{{- .Values.s3.existingSecret | default "medfoundry-s3" -}}
{{- end }}

{{- define "medfoundry.s3Endpoint" -}}
{{- .Values.s3.endpoint | default (printf "minio.%s.svc:9000" .Release.Namespace) -}}
{{- end }}

{{- define "medfoundry.s3Url" -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.s3.useHttps) (include "medfoundry.s3Endpoint" .) -}}
{{- end }}

{{- define "medfoundry.pgSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{- .Values.postgresql.auth.existingSecret | default "medfoundry-postgresql" -}}
{{- else -}}
{{- required "externalDatabase.existingSecret is required when postgresql.enabled is false" .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end }}

{{- define "medfoundry.pgHost" -}}
{{- if .Values.postgresql.enabled -}}postgresql{{- else -}}{{ required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host }}{{- end -}}
{{- end }}

{{- define "medfoundry.pgPort" -}}
{{- if .Values.postgresql.enabled -}}5432{{- else -}}{{ .Values.externalDatabase.port }}{{- end -}}
{{- end }}

{{- define "medfoundry.pgUser" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.auth.username }}{{- else -}}{{ .Values.externalDatabase.username }}{{- end -}}
{{- end }}

{{- define "medfoundry.pipelineNamespace" -}}
{{- .Values.serviceAccounts.pipeline.namespace | default .Release.Namespace -}}
{{- end }}

{{/* Pod-level security for a UID: include with (dict "uid" 10001). */}}
{{- define "medfoundry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "medfoundry.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The S3 credentials as environment variables, from the Secret only. */}}
{{- define "medfoundry.s3Env" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "medfoundry.s3Secret" . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "medfoundry.s3Secret" . }}
      key: AWS_SECRET_ACCESS_KEY
- name: AWS_ENDPOINT_URL
  value: {{ include "medfoundry.s3Url" . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- end }}

{{- define "medfoundry.pgPasswordEnv" -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "medfoundry.pgSecret" . }}
      key: password
{{- end }}

{{- define "medfoundry.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}
