"""StarlingX sysinv extension for Intel GPUs: an agent that detects GPUs and a conductor that labels nodes.

The agent reaches the conductor only through ``sysinv_ext.conductor.rpcapi``; the conductor owns
Kubernetes access (``conductor.kube``) and the label database (``db``).
"""
