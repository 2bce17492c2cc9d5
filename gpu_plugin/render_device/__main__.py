"""``python -m gpu_plugin.render_device``: the same program as the `render-device` console script."""
import sys

from gpu_plugin.render_device.main import main

sys.exit(main())
