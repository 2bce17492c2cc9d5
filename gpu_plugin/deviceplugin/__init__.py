"""Generic kubelet device-plugin framework (no GPU knowledge).

``api`` is the contract with a plugin (device data, Scanner/Notifier protocols, errors);
``manager.Manager`` runs a scanner and one ``server.DevicePluginServer`` per resource type.
Import ``server``/``manager`` explicitly: this package does not import gRPC on its own.
"""
