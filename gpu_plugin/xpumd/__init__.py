"""Health from the XPU Manager daemon (xpumd) for -xpumd-endpoint, as upstream's xpumdservice."""
