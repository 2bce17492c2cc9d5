"""``python -m gpu_plugin.nfdhook``: the same program as the `intel-gpu-nfdhook` console script."""
import sys

from gpu_plugin.nfdhook.main import main

sys.exit(main())
