"""`render-device` (upstream's cmd/gpu_plugin/render-device.sh as a program): :mod:`.main`."""
