"""sysinv.helm.lifecycle_base: the base operator's own handling, recorded in ``base_calls``."""


class AppLifecycleOperator:
    base_calls = []

    def app_lifecycle_actions(self, context, conductor_obj, app_op, app, hook_info):
        self.base_calls.append((hook_info.lifecycle_type, hook_info.operation, hook_info.relative_timing))
