import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reading(_message.Message):
    __slots__ = ("metric", "value", "unit", "measured_at", "measured_time", "device")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    MEASURED_TIME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    value: float
    unit: str
    measured_at: str
    measured_time: _timestamp_pb2.Timestamp
    device: str
    def __init__(self, metric: _Optional[str] = ..., value: _Optional[float] = ..., unit: _Optional[str] = ..., measured_at: _Optional[str] = ..., measured_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_type", "severity", "occurred_at", "occurred_time", "detail_json", "detail", "device")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_TIME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    severity: int
    occurred_at: str
    occurred_time: _timestamp_pb2.Timestamp
    detail_json: str
    detail: _struct_pb2.Struct
    device: str
    def __init__(self, event_type: _Optional[str] = ..., severity: _Optional[int] = ..., occurred_at: _Optional[str] = ..., occurred_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detail_json: _Optional[str] = ..., detail: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., device: _Optional[str] = ...) -> None: ...

class IngestChunk(_message.Message):
    __slots__ = ("id", "seq", "readings", "events")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    READINGS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    seq: int
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, id: _Optional[str] = ..., seq: _Optional[int] = ..., readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class FieldError(_message.Message):
    __slots__ = ("field", "messages")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    field: str
    messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, field: _Optional[str] = ..., messages: _Optional[_Iterable[str]] = ...) -> None: ...

class ChunkErrors(_message.Message):
    __slots__ = ("fields", "fields_json")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[FieldError]
    fields_json: str
    def __init__(self, fields: _Optional[_Iterable[_Union[FieldError, _Mapping]]] = ..., fields_json: _Optional[str] = ...) -> None: ...

class ChunkResult(_message.Message):
    __slots__ = ("id", "seq", "message_id", "errors")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    id: str
    seq: int
    message_id: str
    errors: ChunkErrors
    def __init__(self, id: _Optional[str] = ..., seq: _Optional[int] = ..., message_id: _Optional[str] = ..., errors: _Optional[_Union[ChunkErrors, _Mapping]] = ...) -> None: ...
