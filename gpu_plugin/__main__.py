"""``python -m gpu_plugin``: the same as the ``intel-gpu-plugin`` console script."""
import sys

from gpu_plugin.cli import main

sys.exit(main())
