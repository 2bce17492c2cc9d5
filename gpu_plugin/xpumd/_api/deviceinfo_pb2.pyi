from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeverityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_LEVEL_UNKNOWN: _ClassVar[SeverityLevel]
    SEVERITY_LEVEL_OK: _ClassVar[SeverityLevel]
    SEVERITY_LEVEL_WARNING: _ClassVar[SeverityLevel]
    SEVERITY_LEVEL_CRITICAL: _ClassVar[SeverityLevel]
    SEVERITY_LEVEL_FAILED: _ClassVar[SeverityLevel]

class EventSeverityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_SEVERITY_LEVEL_UNSPECIFIED: _ClassVar[EventSeverityLevel]
    EVENT_SEVERITY_LEVEL_TRACE: _ClassVar[EventSeverityLevel]
    EVENT_SEVERITY_LEVEL_DEBUG: _ClassVar[EventSeverityLevel]
    EVENT_SEVERITY_LEVEL_INFO: _ClassVar[EventSeverityLevel]
    EVENT_SEVERITY_LEVEL_WARN: _ClassVar[EventSeverityLevel]
    EVENT_SEVERITY_LEVEL_ERROR: _ClassVar[EventSeverityLevel]
    EVENT_SEVERITY_LEVEL_FATAL: _ClassVar[EventSeverityLevel]
SEVERITY_LEVEL_UNKNOWN: SeverityLevel
SEVERITY_LEVEL_OK: SeverityLevel
SEVERITY_LEVEL_WARNING: SeverityLevel
SEVERITY_LEVEL_CRITICAL: SeverityLevel
SEVERITY_LEVEL_FAILED: SeverityLevel
EVENT_SEVERITY_LEVEL_UNSPECIFIED: EventSeverityLevel
EVENT_SEVERITY_LEVEL_TRACE: EventSeverityLevel
EVENT_SEVERITY_LEVEL_DEBUG: EventSeverityLevel
EVENT_SEVERITY_LEVEL_INFO: EventSeverityLevel
EVENT_SEVERITY_LEVEL_WARN: EventSeverityLevel
EVENT_SEVERITY_LEVEL_ERROR: EventSeverityLevel
EVENT_SEVERITY_LEVEL_FATAL: EventSeverityLevel

class WatchDeviceHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchDeviceEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceHealthResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceHealth]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceHealth, _Mapping]]] = ...) -> None: ...

class DeviceEventResponse(_message.Message):
    __slots__ = ("device", "reason", "message", "severity")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    device: DeviceIdentification
    reason: str
    message: str
    severity: EventSeverityLevel
    def __init__(self, device: _Optional[_Union[DeviceIdentification, _Mapping]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., severity: _Optional[_Union[EventSeverityLevel, str]] = ...) -> None: ...

class DeviceHealth(_message.Message):
    __slots__ = ("info", "health")
    INFO_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    info: DeviceInformation
    health: _containers.RepeatedCompositeFieldContainer[HealthStatus]
    def __init__(self, info: _Optional[_Union[DeviceInformation, _Mapping]] = ..., health: _Optional[_Iterable[_Union[HealthStatus, _Mapping]]] = ...) -> None: ...

class DeviceInformation(_message.Message):
    __slots__ = ("uuid", "model", "pci", "firmwares", "memory")
    UUID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PCI_FIELD_NUMBER: _ClassVar[int]
    FIRMWARES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    model: str
    pci: PciInfo
    firmwares: _containers.RepeatedCompositeFieldContainer[FirmwareInfo]
    memory: _containers.RepeatedCompositeFieldContainer[MemoryInfo]
    def __init__(self, uuid: _Optional[str] = ..., model: _Optional[str] = ..., pci: _Optional[_Union[PciInfo, _Mapping]] = ..., firmwares: _Optional[_Iterable[_Union[FirmwareInfo, _Mapping]]] = ..., memory: _Optional[_Iterable[_Union[MemoryInfo, _Mapping]]] = ...) -> None: ...

class DeviceIdentification(_message.Message):
    __slots__ = ("uuid", "model", "pci")
    UUID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PCI_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    model: str
    pci: PciInfo
    def __init__(self, uuid: _Optional[str] = ..., model: _Optional[str] = ..., pci: _Optional[_Union[PciInfo, _Mapping]] = ...) -> None: ...

class PciInfo(_message.Message):
    __slots__ = ("bdf", "device_id", "vendor_id")
    BDF_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    bdf: str
    device_id: str
    vendor_id: str
    def __init__(self, bdf: _Optional[str] = ..., device_id: _Optional[str] = ..., vendor_id: _Optional[str] = ...) -> None: ...

class FirmwareInfo(_message.Message):
    __slots__ = ("name", "version", "subdevice_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBDEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    subdevice_id: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., subdevice_id: _Optional[str] = ...) -> None: ...

class MemoryInfo(_message.Message):
    __slots__ = ("type", "subdevice_id", "size")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBDEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    type: str
    subdevice_id: str
    size: int
    def __init__(self, type: _Optional[str] = ..., subdevice_id: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class HealthStatus(_message.Message):
    __slots__ = ("name", "severity", "reason", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    severity: SeverityLevel
    reason: str
    message: str
    def __init__(self, name: _Optional[str] = ..., severity: _Optional[_Union[SeverityLevel, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
