"""sysinv.common.utils.is_chart_enabled: here from ``dbapi.charts_enabled`` (default enabled)."""


def is_chart_enabled(dbapi, app_name, chart_name, namespace):
    return dbapi.charts_enabled.get((app_name, chart_name, namespace), True)
