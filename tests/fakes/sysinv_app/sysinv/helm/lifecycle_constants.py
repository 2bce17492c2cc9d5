"""sysinv.helm.lifecycle_constants (values as in sysinv)."""


class LifecycleConstants:
    APP_LIFECYCLE_TIMING_PRE = "pre"
    APP_LIFECYCLE_TIMING_POST = "post"
    APP_LIFECYCLE_TYPE_SEMANTIC_CHECK = "check"
    APP_LIFECYCLE_TYPE_OPERATION = "operation"
    APP_LIFECYCLE_TYPE_RESOURCE = "resource"
    APP_LIFECYCLE_MODE_MANUAL = "manual"
    APP_LIFECYCLE_MODE_AUTO = "auto"
