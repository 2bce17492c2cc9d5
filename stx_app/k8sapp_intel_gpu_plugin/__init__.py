"""sysinv plugin of the intel-gpu-plugin StarlingX application.

The decisions (system overrides, whether apply may go ahead, which HelmReleases stay in the
manifest) are plain functions in ``overrides``, ``checks`` and ``releases``, importable and
tested without sysinv. The classes sysinv loads through this distribution's entry points
(``helm``, ``kustomize``, ``lifecycle``) subclass sysinv's base classes, so only those modules
import sysinv, and only sysinv imports them.
"""
