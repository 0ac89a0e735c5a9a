from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_NONE: _ClassVar[Compression]
    COMPRESSION_LZ4: _ClassVar[Compression]
    COMPRESSION_ZSTD: _ClassVar[Compression]
COMPRESSION_NONE: Compression
COMPRESSION_LZ4: Compression
COMPRESSION_ZSTD: Compression

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data", "compression", "rows")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    compression: Compression
    rows: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., compression: _Optional[_Union[Compression, str]] = ..., rows: _Optional[_Iterable[bytes]] = ...) -> None: ...

class InsertRequest(_message.Message):
    __slots__ = ("table", "columns", "priorities", "frames", "ack_later")
    class ColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    TABLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ACK_LATER_FIELD_NUMBER: _ClassVar[int]
    table: str
    columns: _containers.MessageMap[str, Tensor]
    priorities: Tensor
    frames: Tensor
    ack_later: bool
    def __init__(self, table: _Optional[str] = ..., columns: _Optional[_Mapping[str, Tensor]] = ..., priorities: _Optional[_Union[Tensor, _Mapping]] = ..., frames: _Optional[_Union[Tensor, _Mapping]] = ..., ack_later: _Optional[bool] = ...) -> None: ...

class InsertResponse(_message.Message):
    __slots__ = ("items", "messages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    items: int
    messages: int
    def __init__(self, items: _Optional[int] = ..., messages: _Optional[int] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("table", "batch_size", "prefetch", "num_batches", "timeout_seconds")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    NUM_BATCHES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    table: str
    batch_size: int
    prefetch: int
    num_batches: int
    timeout_seconds: float
    def __init__(self, table: _Optional[str] = ..., batch_size: _Optional[int] = ..., prefetch: _Optional[int] = ..., num_batches: _Optional[int] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class SampleResponse(_message.Message):
    __slots__ = ("columns", "keys", "probabilities", "batch_size", "frames", "frame_columns")
    class ColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAME_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.MessageMap[str, Tensor]
    keys: Tensor
    probabilities: Tensor
    batch_size: int
    frames: Tensor
    frame_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, columns: _Optional[_Mapping[str, Tensor]] = ..., keys: _Optional[_Union[Tensor, _Mapping]] = ..., probabilities: _Optional[_Union[Tensor, _Mapping]] = ..., batch_size: _Optional[int] = ..., frames: _Optional[_Union[Tensor, _Mapping]] = ..., frame_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdatePrioritiesRequest(_message.Message):
    __slots__ = ("table", "keys", "priorities")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    table: str
    keys: Tensor
    priorities: Tensor
    def __init__(self, table: _Optional[str] = ..., keys: _Optional[_Union[Tensor, _Mapping]] = ..., priorities: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class UpdatePrioritiesResponse(_message.Message):
    __slots__ = ("updated", "ignored")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    ignored: int
    def __init__(self, updated: _Optional[int] = ..., ignored: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tables: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldSpec(_message.Message):
    __slots__ = ("dtype", "shape", "compression", "frames")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    compression: Compression
    frames: bool
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., compression: _Optional[_Union[Compression, str]] = ..., frames: _Optional[bool] = ...) -> None: ...

class RateLimiterInfo(_message.Message):
    __slots__ = ("kind", "insert_blocked_seconds", "sample_blocked_seconds", "can_insert", "can_sample", "inserts_waiting", "samples_waiting")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INSERT_BLOCKED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BLOCKED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CAN_INSERT_FIELD_NUMBER: _ClassVar[int]
    CAN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    INSERTS_WAITING_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WAITING_FIELD_NUMBER: _ClassVar[int]
    kind: str
    insert_blocked_seconds: float
    sample_blocked_seconds: float
    can_insert: bool
    can_sample: bool
    inserts_waiting: int
    samples_waiting: int
    def __init__(self, kind: _Optional[str] = ..., insert_blocked_seconds: _Optional[float] = ..., sample_blocked_seconds: _Optional[float] = ..., can_insert: _Optional[bool] = ..., can_sample: _Optional[bool] = ..., inserts_waiting: _Optional[int] = ..., samples_waiting: _Optional[int] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("name", "size", "max_size", "selector", "max_times_sampled", "inserted_items", "sampled_items", "priority_updates", "stored_bytes", "signature", "rate_limiter", "stored_frames")
    class SignatureEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FieldSpec
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FieldSpec, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMES_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    INSERTED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_UPDATES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITER_FIELD_NUMBER: _ClassVar[int]
    STORED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    max_size: int
    selector: str
    max_times_sampled: int
    inserted_items: int
    sampled_items: int
    priority_updates: int
    stored_bytes: int
    signature: _containers.MessageMap[str, FieldSpec]
    rate_limiter: RateLimiterInfo
    stored_frames: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., max_size: _Optional[int] = ..., selector: _Optional[str] = ..., max_times_sampled: _Optional[int] = ..., inserted_items: _Optional[int] = ..., sampled_items: _Optional[int] = ..., priority_updates: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., signature: _Optional[_Mapping[str, FieldSpec]] = ..., rate_limiter: _Optional[_Union[RateLimiterInfo, _Mapping]] = ..., stored_frames: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableInfo]
    def __init__(self, tables: _Optional[_Iterable[_Union[TableInfo, _Mapping]]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...
