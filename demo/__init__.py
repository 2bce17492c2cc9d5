"""The whole flow on one machine (``make demo`` = ``python -m demo``).

Runs the project's real programs (ansible-playbook, kubectl, sysinv-gpu-agent,
sysinv-gpu-conductor, intel-gpu-plugin) against the test doubles in
``tests/fakes`` (emulated sysfs, Kubernetes API server and kubelet).  The
e2e test (tests/e2e/test_whole_flow.py) drives the same steps from
``demo.flow``.  Not production code: nothing under gpu_plugin/ or sysinv_ext/
imports it.
"""
