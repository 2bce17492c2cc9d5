"""``sysinv-gpu-status``: the chain GPU -> report -> label -> allocatable, one row per host.

``rows`` is pure (recorded hosts + nodes + enabled labels in, rows with their problems out);
``kube`` is the command's read-only view of the nodes. The command itself is
``sysinv_ext.cmd.status``; the database is read through ``sysinv_ext.db.api`` only.
"""
