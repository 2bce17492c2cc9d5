"""sysinv.helm.base: BaseHelm(operator) and the abstract FluxCDBaseHelm."""


class BaseHelm:
    SUPPORTED_NAMESPACES = []
    SUPPORTED_APP_NAMESPACES = {}

    def __init__(self, operator):
        self._operator = operator

    @property
    def dbapi(self):
        return self._operator.dbapi

    def get_overrides(self, namespace=None):
        return {}


class FluxCDBaseHelm(BaseHelm):
    pass
