"""Options of the conductor: the ``[conductor]`` and ``[database]`` groups.

Shaped like cyborg/conf/agent.py: one OptGroup per section, real help text, bounds, and a
``sample_default`` where the default depends on the host. Nothing here reads the global CONF:
``register_opts(conf)`` registers on the ConfigOpts it is given.
"""
from __future__ import annotations

import socket

from oslo_config import cfg

from sysinv_ext.common import constants

DEFAULT_TOPIC = constants.GPU_CONDUCTOR_TOPIC
DEFAULT_STATE_PATH = "/var/lib/sysinv-gpu"
DEFAULT_DB_FILE = "conductor.sqlite"
DEFAULT_PENDING_TTL = 86400  # a day: a host installed in the evening joins Kubernetes overnight
DEFAULT_PENDING_LIMIT = 1000
DEFAULT_LEASE_NAME = "sysinv-gpu-conductor"

conductor_group = cfg.OptGroup(
    name="conductor",
    title="Conductor options",
    help="The conductor receives device plugin reports from agents over RPC and labels Kubernetes nodes.",
)

conductor_opts = [
    cfg.StrOpt(
        "topic",
        default=DEFAULT_TOPIC,
        help="AMQP RPC topic the conductor listens on; agents use the same value in "
        "[agent]conductor_topic. The default is this conductor's own: sysinv.conductor_manager "
        "is sysinv-conductor's queue, and two consumers on one queue split every sysinv call "
        "between them. Set it to sysinv.conductor_manager only on a system without a "
        "RabbitMQ-based sysinv-conductor (a warning is logged).",
    ),
    cfg.StrOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<hostname>",
        help="Name of this conductor as an RPC server (the server part of the RPC target).",
    ),
    cfg.StrOpt(
        "enabled_kube_plugins",
        default="/etc/platform/enabled_kube_plugins",
        help="JSON file listing the enabled Kubernetes device plugins, written by the bootstrap "
        'playbook. Accepted forms: {"intel-gpu-plugin": "intelgpu=enabled"}, ["intelgpu"] or '
        '["intel-gpu-plugin"]. A missing file means no plugin is enabled; a corrupt file is '
        "logged and the previous content stays in force. Re-read whenever it changes.",
    ),
    cfg.ListOpt(
        "allowed_label_keys",
        default=[],
        help="Node label keys the conductor may set and remove besides those of the device "
        "plugins it knows (intel-gpu-plugin: intelgpu). A key in enabled_kube_plugins that is "
        "in neither is refused (logged, the rest of the file applies). Keys under kubernetes.io/, "
        "k8s.io/ and node-role.* are always refused: they belong to Kubernetes.",
    ),
    cfg.IntOpt(
        "audit_interval",
        default=60,
        min=1,
        max=86400,
        help="Seconds between label audits. An audit lists the nodes once, re-applies recorded "
        "labels that are missing on their node and forgets labels of plugins no longer enabled.",
    ),
    cfg.IntOpt(
        "pending_host_ttl",
        default=DEFAULT_PENDING_TTL,
        min=60,
        max=30 * 86400,
        help="Seconds a host that reported but whose Kubernetes node was never seen stays "
        "recorded (sysinv reports a host before its kubelet joins; its labels are set as soon "
        "as the node appears). The default, one day, covers a host installed and joined "
        "overnight; an agent re-reports every [agent]report_interval, so a real host that "
        "expires is recorded again by its next report. Hosts whose node was seen never expire.",
    ),
    cfg.IntOpt(
        "pending_host_limit",
        default=DEFAULT_PENDING_LIMIT,
        min=1,
        max=1000000,
        help="At most this many hosts without a Kubernetes node are recorded; reports of "
        "further unknown hosts are answered but not recorded (the agent's next periodic report "
        "is applied once its node exists). Bounds what random host uuids can make the "
        "conductor store.",
    ),
    cfg.BoolOpt(
        "leader_election",
        default=True,
        help="Run as one of several conductors (one per controller) on one database: only the "
        "holder of the Kubernetes Lease [conductor]lease_namespace/lease_name serves RPC, "
        "audits and patches nodes; the others wait as standbys and take over within "
        "lease_duration when it stops renewing. The identity is [conductor]host. Disable only "
        "when a single conductor runs and the Lease API must not be used.",
    ),
    cfg.StrOpt(
        "lease_namespace",
        default="kube-system",
        help="Namespace of the leader election Lease (coordination.k8s.io/v1).",
    ),
    cfg.StrOpt(
        "lease_name",
        default=DEFAULT_LEASE_NAME,
        help="Name of the leader election Lease; conductors sharing a database must use the same.",
    ),
    cfg.FloatOpt(
        "lease_duration",
        default=15.0,
        min=2.0,
        max=300.0,
        help="Seconds a standby waits, after the active conductor's last renewal, before it "
        "takes the Lease over (client-go's LeaseDuration).",
    ),
    cfg.FloatOpt(
        "lease_renew_deadline",
        default=10.0,
        min=1.0,
        max=299.0,
        help="Seconds the active conductor keeps serving without a successful renewal before it "
        "steps down; must be below lease_duration so two never serve at once.",
    ),
    cfg.FloatOpt(
        "lease_retry_period",
        default=2.0,
        min=0.1,
        max=60.0,
        help="Seconds between two tries to take or renew the Lease; must be below "
        "lease_renew_deadline.",
    ),
    cfg.StrOpt(
        "state_path",
        default=DEFAULT_STATE_PATH,
        help="Directory for the conductor's local state. The default SQLite database "
        "(see [database]connection) lives here; it is created (mode 0750) when missing.",
    ),
]

database_group = cfg.OptGroup(
    name="database",
    title="Database options",
    help="Where the conductor records the labels it manages.",
)

database_opts = [
    cfg.StrOpt(
        "connection",
        secret=True,
        sample_default="sqlite:////var/lib/sysinv-gpu/conductor.sqlite",
        help="SQLAlchemy URL of the label database. Unset means a SQLite file named "
        "conductor.sqlite under [conductor]state_path. Use PostgreSQL in production, e.g. "
        "postgresql+psycopg2://sysinv:PASSWORD@127.0.0.1/sysinv_gpu. The schema is upgraded "
        "to the newest alembic revision when the conductor starts. A SQLite file that is not a "
        "database (corrupt, truncated, a directory) is renamed to <file>.corrupt-<UTC time> and "
        "a fresh one is used (agents re-report); one that cannot be created stops the conductor "
        "with exit code 1.",
    ),
    cfg.IntOpt(
        "connect_retry_interval",
        default=5,
        min=1,
        max=300,
        help="Seconds to wait before retrying when the database cannot be reached at start "
        "(doubled after each failure, capped at ten times this value).",
    ),
]


def _fresh(group: cfg.OptGroup) -> cfg.OptGroup:
    """A new OptGroup per ConfigOpts: oslo.config keeps registered options (and their
    overrides) inside the group object, so sharing one would leak overrides between configs."""
    return cfg.OptGroup(name=group.name, title=group.title, help=group.help)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [conductor] and [database] options on ``conf``."""
    conf.register_group(_fresh(conductor_group))
    conf.register_opts(conductor_opts, group=conductor_group.name)
    conf.register_group(_fresh(database_group))
    conf.register_opts(database_opts, group=database_group.name)


def database_url(conf: cfg.ConfigOpts) -> str:
    """The effective [database]connection: the option, or the SQLite file under state_path."""
    url: str | None = conf.database.connection
    if url:
        return url
    return f"sqlite:///{conf.conductor.state_path.rstrip('/')}/{DEFAULT_DB_FILE}"


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(conductor_group, conductor_opts), (database_group, database_opts)]
