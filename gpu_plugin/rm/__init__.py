"""Resource manager for fractional GPU resources (GPU Aware Scheduling), port of upstream's removed cmd/gpu_plugin/rm."""
