"""k8sapp_intel_gpu_plugin lives in stx_app/ (its own distribution, not installed in the
project's venv): put it on the path, as sysinv's plugin loader does with the wheel."""

from __future__ import annotations

import sys
from pathlib import Path

STX_APP = Path(__file__).resolve().parents[2] / "stx_app"
if str(STX_APP) not in sys.path:
    sys.path.insert(0, str(STX_APP))
