"""sysinv GPU agent: detects Intel GPUs from sysfs and reports them to the conductor over RPC."""
