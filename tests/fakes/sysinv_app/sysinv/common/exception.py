"""sysinv.common.exception: a message template filled from kwargs, or a message given as is."""


class SysinvException(Exception):
    message = "An unknown exception occurred."

    def __init__(self, message=None, **kwargs):
        super().__init__(message if message else self.message % kwargs)


class InvalidHelmNamespace(SysinvException):
    message = "Invalid helm overrides namespace (%(namespace)s) for chart %(chart)s."


class LifecycleSemanticCheckException(SysinvException):
    message = "Semantic check hook for app failed."
