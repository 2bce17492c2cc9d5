import sys

from gpu_plugin.dra.cli import main

sys.exit(main())
