"""Options of the ``[agent]`` group used by ``sysinv-gpu-agent``.

Owns only option definitions (names, defaults, bounds, help); the agent manager receives a
``ConfigOpts`` holding them and never reads the global ``cfg.CONF``.
"""
from __future__ import annotations

from oslo_config import cfg

from sysinv_ext.common import constants

GROUP = "agent"


def _group() -> cfg.OptGroup:
    return cfg.OptGroup(
        name=GROUP, title="sysinv GPU agent options",
        help="Detection of Intel GPUs on this host and their report to the sysinv conductor.")


agent_group = _group()

PAYLOAD_FORMATS = ("2023", "2019")

opts = [
    cfg.StrOpt("sysfs_root", default="/sys",
               help="Root of the sysfs tree scanned for Intel GPUs "
                    "(bus/pci/devices/*); host UUID is read below it too."),
    cfg.StrOpt("host_uuid", default=None,
               sample_default="<read as [agent]host_uuid_source says>",
               help="Host UUID reported to the conductor; when set it wins over "
                    "[agent]host_uuid_source."),
    cfg.StrOpt("host_uuid_source", default="dmi",
               choices=[("dmi", "<sysfs_root>/class/dmi/id/product_uuid: the node's "
                                "systemUUID, what this project's conductor matches"),
                        ("platform_conf", "the UUID= line of [agent]platform_conf: sysinv's "
                                          "host uuid, what a sysinv conductor looks up")],
               help="Where the host UUID comes from when [agent]host_uuid is unset. Our "
                    "conductor matches the Kubernetes node's status.nodeInfo.systemUUID (dmi); "
                    "sysinv's own conductor looks the report up by sysinv's host uuid, which "
                    "sysinv-agent writes as UUID= into /etc/platform/platform.conf "
                    "(platform_conf)."),
    cfg.StrOpt("platform_conf", default="/etc/platform/platform.conf",
               help="StarlingX's platform.conf, read for its UUID= line when "
                    "[agent]host_uuid_source = platform_conf."),
    cfg.IntOpt("report_interval", default=60, min=1,
               help="Seconds between periodic rescans of sysfs. A report is sent at start, "
                    "whenever the set of detected device plugins changes, and again every "
                    "interval even when unchanged (so a conductor that dropped an earlier "
                    "report catches up)."),
    cfg.StrOpt("conductor_topic", default=constants.GPU_CONDUCTOR_TOPIC,
               help="AMQP RPC topic of the conductor the agent reports to: the default is "
                    "sysinv-gpu-conductor's own ([conductor]topic); sysinv.conductor_manager "
                    "reaches sysinv's own (RabbitMQ) conductor."),
    cfg.StrOpt("payload_format", default="2023",
               choices=[("2023", 'device_plugins=["intelgpu"] (sysinv 2f3fa421, our conductor)'),
                        ("2019", "device_plugin_labels=[{label_key, label_value}] "
                                 "(sysinv 023be742)")],
               help="Keyword the report uses: 2023 sends device_plugins=[\"intelgpu\"] "
                    "(sysinv 2f3fa421 and this project's conductor); 2019 sends "
                    "device_plugin_labels=[{\"label_key\": \"intelgpu\", \"label_value\": "
                    "\"enabled\"}] for conductors running sysinv 023be742."),
    cfg.IntOpt("rpc_timeout", default=30, min=1,
               help="Seconds to wait for the conductor's reply to one report."),
    cfg.IntOpt("rpc_retry", default=1, min=0,
               help="Reconnection attempts per report when the broker is unreachable "
                    "(never infinite, so a broker outage cannot block the agent)."),
    cfg.IntOpt("retry_backoff_max", default=60, min=1,
               help="Upper bound in seconds of the exponential backoff between failed "
                    "reports; the agent retries until a report succeeds."),
    cfg.BoolOpt("udev_events", default=True,
                help="Also rescan on udev events of subsystems pci and drm when udev is "
                     "available (pyudev); the periodic rescan runs regardless."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    # A fresh OptGroup each time: ConfigOpts.register_group() makes a shallow copy that shares
    # the group's option table, so set_override() on one ConfigOpts would leak into the next.
    conf.register_group(_group())
    conf.register_opts(opts, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(agent_group, opts)]
