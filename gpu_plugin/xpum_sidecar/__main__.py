"""``python -m gpu_plugin.xpum_sidecar``: the same program as `intel-xpumanager-sidecar`."""
import sys

from gpu_plugin.xpum_sidecar.main import main

sys.exit(main())
