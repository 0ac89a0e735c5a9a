from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ScaleRequest(_message.Message):
    __slots__ = ("actors",)
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    actors: int
    def __init__(self, actors: _Optional[int] = ...) -> None: ...

class ScaleResponse(_message.Message):
    __slots__ = ("previous", "actors", "removed_items_sent", "removed_items_stored", "pending_actors", "removed_items_flushed")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ITEMS_SENT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ITEMS_STORED_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTORS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ITEMS_FLUSHED_FIELD_NUMBER: _ClassVar[int]
    previous: int
    actors: int
    removed_items_sent: int
    removed_items_stored: int
    pending_actors: int
    removed_items_flushed: int
    def __init__(self, previous: _Optional[int] = ..., actors: _Optional[int] = ..., removed_items_sent: _Optional[int] = ..., removed_items_stored: _Optional[int] = ..., pending_actors: _Optional[int] = ..., removed_items_flushed: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("actors", "env_steps", "updates", "pending_actors")
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTORS_FIELD_NUMBER: _ClassVar[int]
    actors: int
    env_steps: int
    updates: int
    pending_actors: int
    def __init__(self, actors: _Optional[int] = ..., env_steps: _Optional[int] = ..., updates: _Optional[int] = ..., pending_actors: _Optional[int] = ...) -> None: ...
