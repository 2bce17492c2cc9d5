"""Wire names shared with StarlingX's sysinv, defined once.

Dependency-free so the conf modules (read by oslo-config-generator) and the RPC code use the same
values: a topic or exchange that differs by one character makes sysinv's messages vanish silently.
"""

#: sysinv's ``conductor/rpcapi.py`` MANAGER_TOPIC: where sysinv's agents send their reports.
MANAGER_TOPIC = "sysinv.conductor_manager"
#: our conductor's own topic: never sysinv's queue, which a RabbitMQ sysinv-conductor consumes
#: (two consumers on one queue split every sysinv call between them).
GPU_CONDUCTOR_TOPIC = "sysinv_gpu.conductor_manager"
#: sysinv's services call ``rpc.set_defaults(control_exchange='sysinv')``; oslo.messaging says 'openstack'.
CONTROL_EXCHANGE = "sysinv"
