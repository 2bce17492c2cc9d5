{{/*
Names, labels, images and the plugin's flags. Object names are fixed (the role's names), so
the chart and roles/bringup_kubemaster describe the same objects: one release per cluster.
*/}}

{{- define "intel-gpu-plugin.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end }}

{{- define "intel-gpu-plugin.hub" -}}
{{- if . }}{{ printf "%s/" (trimSuffix "/" .) }}{{ end }}
{{- end }}

{{- define "intel-gpu-plugin.image" -}}
{{- $i := .Values.image -}}
{{- printf "%s%s:%s" (include "intel-gpu-plugin.hub" $i.hub) $i.name ($i.tag | default .Chart.AppVersion) -}}
{{- if $i.digest }}@{{ $i.digest }}{{ end -}}
{{- end }}

{{- define "intel-gpu-plugin.levelzeroImage" -}}
{{- $l := .Values.health.levelzero.image -}}
{{- printf "%s%s:%s" (include "intel-gpu-plugin.hub" ($l.hub | default .Values.image.hub)) $l.name ($l.tag | default .Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}


{{/* Cross-value rules the schema cannot name clearly; each fails with one line naming the values. */}}
{{- define "intel-gpu-plugin.check" -}}
{{- $h := .Values.health -}}
{{- if and (ne $h.source "levelzero") (or (ne (int $h.temperatureLimits.global) 100) (ne (int $h.temperatureLimits.gpu) 100) (ne (int $h.temperatureLimits.memory) 100)) -}}
{{- fail (printf "health.temperatureLimits apply to health.source=levelzero only (health.source is %s)" $h.source) -}}
{{- end -}}
{{- if and .Values.resourceManager (lt (int .Values.sharedDevNum) 2) -}}
{{- fail (printf "resourceManager needs sharedDevNum > 1 (it is %d): fractional resources share each GPU" (int .Values.sharedDevNum)) -}}
{{- end -}}
{{- if and .Values.allowIDs .Values.denyIDs -}}
{{- fail "allowIDs and denyIDs exclude each other (the plugin takes one of the two)" -}}
{{- end -}}
{{- if and .Values.nodeFeatureRule (hasKey .Values.avoidNodeLabels "intel.feature.node.kubernetes.io/gpu") -}}
{{- fail "nodeFeatureRule labels GPU nodes intel.feature.node.kubernetes.io/gpu=true, which avoidNodeLabels excludes: the plugin would run nowhere" -}}
{{- end -}}
{{- end }}

{{/* nodeSelector: the given one or StarlingX's label, plus the architecture. */}}
{{- define "intel-gpu-plugin.nodeSelector" -}}
{{- $selector := .Values.nodeSelector | default (dict "intelgpu" "enabled") -}}
{{- toYaml (merge (dict) $selector (dict "kubernetes.io/arch" "amd64")) -}}
{{- end }}

{{- define "intel-gpu-plugin.args" -}}
{{- $v := .Values -}}
- {{ printf "-shared-dev-num=%d" (int $v.sharedDevNum) | quote }}
- {{ printf "-allocation-policy=%s" $v.allocationPolicy | quote }}
{{- if $v.enableMonitoring }}
- "-enable-monitoring"
{{- end }}
{{- if ne $v.monitoringMode "single" }}
- {{ printf "-monitoring-mode=%s" $v.monitoringMode | quote }}
{{- end }}
{{- if $v.resourceManager }}
- "-resource-manager"
{{- end }}
{{- if eq $v.health.source "levelzero" }}
- "-health-management"
{{- with $v.health.temperatureLimits }}
{{- if ne (int .global) 100 }}
- {{ printf "-temp-limit=%d" (int .global) | quote }}
{{- end }}
{{- if ne (int .gpu) 100 }}
- {{ printf "-gpu-temp-limit=%d" (int .gpu) | quote }}
{{- end }}
{{- if ne (int .memory) 100 }}
- {{ printf "-memory-temp-limit=%d" (int .memory) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $v.health.source "xpumd" }}
- {{ printf "-xpumd-endpoint=%s" $v.health.xpumd.endpoint | quote }}
- {{ printf "-xpumd-severity-limit=%s" $v.health.xpumd.severityLimit | quote }}
{{- end }}
{{- if $v.allowIDs }}
- {{ printf "-allow-ids=%s" $v.allowIDs | quote }}
{{- end }}
{{- if $v.denyIDs }}
- {{ printf "-deny-ids=%s" $v.denyIDs | quote }}
{{- end }}
{{- if $v.bypathMode }}
- {{ printf "-bypath=%s" $v.bypathMode | quote }}
{{- end }}
{{- if gt (int $v.logLevel) 0 }}
- {{ printf "-v=%d" (int $v.logLevel) | quote }}
{{- end }}
{{- if $v.metrics.enabled }}
# the pod IP only (kubelet expands $(POD_IP)); brackets fit IPv4 and IPv6 alike
- {{ printf "-metrics-address=[$(POD_IP)]:%d" (int $v.metrics.port) | quote }}
{{- end }}
{{- end }}
