# Intel GPU device plugin for Kubernetes (Python port), built from the repository root:
#   docker build -f build/docker/intel-gpu-plugin.Dockerfile -t intel/intel-gpu-plugin:devel .
#
# Like upstream's image it runs as root by default: the plugin creates its sockets in kubelet's
# root-owned /var/lib/kubelet/device-plugins and writes CDI specs to /var/run/cdi. Upstream allows a
# non-root user only when the node's DAC rules permit socket creation and registration; for that case
# the image has the unprivileged user "gpuplugin" (65532:65532): set runAsUser/runAsGroup 65532 in the
# DaemonSet's securityContext (see cmd/gpu_plugin/README.md upstream, "Running GPU plugin as non-root").
ARG PYTHON_BASE=python:3.12.8-slim-bookworm

FROM ${PYTHON_BASE} AS builder
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY gpu_plugin ./gpu_plugin
# The package and its runtime dependencies (grpcio, protobuf, pyudev, prometheus_client) as wheels.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels starlingx-intel-gpu \
    && rm -rf /wheels \
    && groupadd --system --gid 65532 gpuplugin \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin gpuplugin
ENTRYPOINT ["intel-gpu-plugin"]
LABEL name='intel-gpu-plugin' \
      summary='Intel GPU device plugin for Kubernetes' \
      description='Advertises Intel GPUs (i915/xe) to kubelet as gpu.intel.com resources'
