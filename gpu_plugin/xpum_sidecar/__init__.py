"""`intel-xpumanager-sidecar` (upstream's cmd/xpumanager_sidecar): :mod:`.main` is the program,
:mod:`.prometheus_text` parses XPU Manager's ``/metrics`` page.
"""
