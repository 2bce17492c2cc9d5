"""sysinv.helm.kustomize_base: the operator's removal of a HelmRelease, recorded."""


class FluxCDKustomizeOperator:
    def __init__(self, manifest_fqpn=None):
        self.deleted = []

    def helm_release_resource_delete(self, helmrelease_name):
        self.deleted.append(helmrelease_name)
