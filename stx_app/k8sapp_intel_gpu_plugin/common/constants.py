"""Names shared by the application's manifests, chart and sysinv plugin (one place for each)."""

APP_NAME = "intel-gpu-plugin"
CHART = "intel-gpu-plugin"
HELM_RELEASE = "intel-gpu-plugin"
NAMESPACE = "intel-gpu-plugin"

#: The node label sysinv-gpu-conductor sets on hosts that reported an Intel GPU (i915 or xe);
#: StarlingX's own KUBE_INTEL_GPU_DEVICE_PLUGIN_LABEL.
GPU_LABEL_KEY = "intelgpu"
GPU_LABEL_VALUE = "enabled"

#: sysinv's local registry (constants.DOCKER_REGISTRY_SERVER) and the secret sysinv creates in
#: every application namespace for it (lifecycle_utils.create_local_registry_secrets).
LOCAL_REGISTRY = "registry.local:9001"
LOCAL_REGISTRY_SECRET = "default-registry-key"
IMAGE_REPOSITORY = "intel"

#: Taints of StarlingX controllers; all-in-one controllers run workloads despite them.
CONTROLLER_TAINT_KEYS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")

#: sysinv-gpu-conductor's leader election Lease ([conductor]lease_namespace/lease_name defaults).
CONDUCTOR_LEASE_NAMESPACE = "kube-system"
CONDUCTOR_LEASE_NAME = "sysinv-gpu-conductor"

#: intel-device-plugins-operator's GPU plugin: its custom resource and the node label its
#: NodeFeatureRule sets and its GpuDevicePlugin selects.
OPERATOR_APP_NAME = "intel-device-plugins-operator"
OPERATOR_CR_GROUP = "deviceplugin.intel.com"
OPERATOR_CR_VERSION = "v1"
OPERATOR_CR_PLURAL = "gpudeviceplugins"
OPERATOR_NODE_LABEL = "intel.feature.node.kubernetes.io/gpu"
