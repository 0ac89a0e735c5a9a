from shoal.protos import replay_pb2 as _replay_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("after_version",)
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    after_version: int
    def __init__(self, after_version: _Optional[int] = ...) -> None: ...

class Weights(_message.Message):
    __slots__ = ("version", "tensors")
    class TensorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _replay_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_replay_pb2.Tensor, _Mapping]] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    version: int
    tensors: _containers.MessageMap[str, _replay_pb2.Tensor]
    def __init__(self, version: _Optional[int] = ..., tensors: _Optional[_Mapping[str, _replay_pb2.Tensor]] = ...) -> None: ...

class ObservationStats(_message.Message):
    __slots__ = ("count", "mean", "m2")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    M2_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: _replay_pb2.Tensor
    m2: _replay_pb2.Tensor
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[_Union[_replay_pb2.Tensor, _Mapping]] = ..., m2: _Optional[_Union[_replay_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ReportReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
