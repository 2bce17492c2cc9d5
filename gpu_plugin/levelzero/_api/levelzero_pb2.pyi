from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetIntelIndicesMessage(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceId(_message.Message):
    __slots__ = ("bdfAddress",)
    BDFADDRESS_FIELD_NUMBER: _ClassVar[int]
    bdfAddress: str
    def __init__(self, bdfAddress: _Optional[str] = ...) -> None: ...

class DeviceHealth(_message.Message):
    __slots__ = ("memory_ok", "bus_ok", "soc_ok", "error")
    MEMORY_OK_FIELD_NUMBER: _ClassVar[int]
    BUS_OK_FIELD_NUMBER: _ClassVar[int]
    SOC_OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    memory_ok: bool
    bus_ok: bool
    soc_ok: bool
    error: Error
    def __init__(self, memory_ok: _Optional[bool] = ..., bus_ok: _Optional[bool] = ..., soc_ok: _Optional[bool] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class DeviceTemperature(_message.Message):
    __slots__ = ("gpu", "memory", "error")
    GLOBAL_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    gpu: float
    memory: float
    error: Error
    def __init__(self, gpu: _Optional[float] = ..., memory: _Optional[float] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., **kwargs) -> None: ...

class DeviceIndices(_message.Message):
    __slots__ = ("indices", "error")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    error: Error
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class DeviceMemoryAmount(_message.Message):
    __slots__ = ("memory_size", "error")
    MEMORY_SIZE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    memory_size: int
    error: Error
    def __init__(self, memory_size: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("description", "errorcode")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ERRORCODE_FIELD_NUMBER: _ClassVar[int]
    description: str
    errorcode: int
    def __init__(self, description: _Optional[str] = ..., errorcode: _Optional[int] = ...) -> None: ...
