"""Which HelmReleases the kustomize operator removes from the application's manifest.

A release leaves the top-level kustomization when its chart is disabled
(``system helm-chart-attribute-modify --enabled false intel-gpu-plugin intel-gpu-plugin
intel-gpu-plugin``); sysinv then uninstalls it and puts it back once re-enabled.
"""

from __future__ import annotations

from collections.abc import Mapping


def releases_to_remove(enabled: Mapping[str, bool]) -> list[str]:
    """HelmRelease name -> chart enabled; the names to drop, sorted."""
    return sorted(name for name, on in enabled.items() if not on)
