"""Kubelet DRA plugin for Intel GPUs (driver ``gpu.intel.com``, ``resource.k8s.io/v1``).

A sibling program of the device plugin over the same discovery (see :mod:`gpu_plugin.dra.cli`
for why): ``devices`` (scan -> DRA devices, pure), ``state`` (checkpoint, per-claim CDI specs),
``slices`` (ResourceSlice reconcile), ``kube`` (the API client), ``driver`` (the glue),
``server`` (registration and gRPC, the only user of the stubs in ``_api``), ``cli``.
"""
