from shared.sources.google.proto import device_update_pb2 as _device_update_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceComponent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_COMPONENT_UNSPECIFIED: _ClassVar[DeviceComponent]
    DEVICE_COMPONENT_RIGHT: _ClassVar[DeviceComponent]
    DEVICE_COMPONENT_LEFT: _ClassVar[DeviceComponent]
    DEVICE_COMPONENT_CASE: _ClassVar[DeviceComponent]

class ContributorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FMDN_DISABLED_DEFAULT: _ClassVar[ContributorType]
    FMDN_HIGH_TRAFFIC: _ClassVar[ContributorType]
    FMDN_ALL_LOCATIONS: _ClassVar[ContributorType]
    FMDN_CONTRIBUTOR_HIGH_TRAFFIC: _ClassVar[ContributorType]
    FMDN_CONTRIBUTOR_ALL_LOCATIONS: _ClassVar[ContributorType]
DEVICE_COMPONENT_UNSPECIFIED: DeviceComponent
DEVICE_COMPONENT_RIGHT: DeviceComponent
DEVICE_COMPONENT_LEFT: DeviceComponent
DEVICE_COMPONENT_CASE: DeviceComponent
FMDN_DISABLED_DEFAULT: ContributorType
FMDN_HIGH_TRAFFIC: ContributorType
FMDN_ALL_LOCATIONS: ContributorType
FMDN_CONTRIBUTOR_HIGH_TRAFFIC: ContributorType
FMDN_CONTRIBUTOR_ALL_LOCATIONS: ContributorType

class DevicesListRequest(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: DevicesListRequestPayload
    def __init__(self, payload: _Optional[_Union[DevicesListRequestPayload, _Mapping]] = ...) -> None: ...

class DevicesListRequestPayload(_message.Message):
    __slots__ = ("type", "id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    type: _device_update_pb2.DeviceType
    id: str
    def __init__(self, type: _Optional[_Union[_device_update_pb2.DeviceType, str]] = ..., id: _Optional[str] = ...) -> None: ...

class DevicesList(_message.Message):
    __slots__ = ("device_metadata",)
    DEVICE_METADATA_FIELD_NUMBER: _ClassVar[int]
    device_metadata: _containers.RepeatedCompositeFieldContainer[_device_update_pb2.DeviceMetadata]
    def __init__(self, device_metadata: _Optional[_Iterable[_Union[_device_update_pb2.DeviceMetadata, _Mapping]]] = ...) -> None: ...

class ExecuteActionRequest(_message.Message):
    __slots__ = ("scope", "action", "request_metadata")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_METADATA_FIELD_NUMBER: _ClassVar[int]
    scope: ActionScope
    action: Action
    request_metadata: _device_update_pb2.ActionRequestMetadata
    def __init__(self, scope: _Optional[_Union[ActionScope, _Mapping]] = ..., action: _Optional[_Union[Action, _Mapping]] = ..., request_metadata: _Optional[_Union[_device_update_pb2.ActionRequestMetadata, _Mapping]] = ...) -> None: ...

class ActionScope(_message.Message):
    __slots__ = ("type", "device")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    type: _device_update_pb2.DeviceType
    device: ActionTarget
    def __init__(self, type: _Optional[_Union[_device_update_pb2.DeviceType, str]] = ..., device: _Optional[_Union[ActionTarget, _Mapping]] = ...) -> None: ...

class ActionTarget(_message.Message):
    __slots__ = ("canonic_id",)
    CANONIC_ID_FIELD_NUMBER: _ClassVar[int]
    canonic_id: _device_update_pb2.CanonicId
    def __init__(self, canonic_id: _Optional[_Union[_device_update_pb2.CanonicId, _Mapping]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("locate_tracker", "start_sound", "stop_sound")
    LOCATE_TRACKER_FIELD_NUMBER: _ClassVar[int]
    START_SOUND_FIELD_NUMBER: _ClassVar[int]
    STOP_SOUND_FIELD_NUMBER: _ClassVar[int]
    locate_tracker: LocateTrackerAction
    start_sound: SoundAction
    stop_sound: SoundAction
    def __init__(self, locate_tracker: _Optional[_Union[LocateTrackerAction, _Mapping]] = ..., start_sound: _Optional[_Union[SoundAction, _Mapping]] = ..., stop_sound: _Optional[_Union[SoundAction, _Mapping]] = ...) -> None: ...

class SoundAction(_message.Message):
    __slots__ = ("component",)
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    component: DeviceComponent
    def __init__(self, component: _Optional[_Union[DeviceComponent, str]] = ...) -> None: ...

class LocateTrackerAction(_message.Message):
    __slots__ = ("last_high_traffic_enabling_time", "contributor_type")
    LAST_HIGH_TRAFFIC_ENABLING_TIME_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    last_high_traffic_enabling_time: _device_update_pb2.Time
    contributor_type: ContributorType
    def __init__(self, last_high_traffic_enabling_time: _Optional[_Union[_device_update_pb2.Time, _Mapping]] = ..., contributor_type: _Optional[_Union[ContributorType, str]] = ...) -> None: ...
