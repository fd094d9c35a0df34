from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_TYPE_UNSPECIFIED: _ClassVar[DeviceType]
    ANDROID_DEVICE: _ClassVar[DeviceType]
    SPOT_DEVICE: _ClassVar[DeviceType]

class IdentifierType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTIFIER_UNKNOWN: _ClassVar[IdentifierType]
    IDENTIFIER_ANDROID: _ClassVar[IdentifierType]
    IDENTIFIER_SPOT: _ClassVar[IdentifierType]

class LocationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEMANTIC: _ClassVar[LocationStatus]
    LAST_KNOWN: _ClassVar[LocationStatus]
    CROWDSOURCED: _ClassVar[LocationStatus]
    AGGREGATED: _ClassVar[LocationStatus]
DEVICE_TYPE_UNSPECIFIED: DeviceType
ANDROID_DEVICE: DeviceType
SPOT_DEVICE: DeviceType
IDENTIFIER_UNKNOWN: IdentifierType
IDENTIFIER_ANDROID: IdentifierType
IDENTIFIER_SPOT: IdentifierType
SEMANTIC: LocationStatus
LAST_KNOWN: LocationStatus
CROWDSOURCED: LocationStatus
AGGREGATED: LocationStatus

class Time(_message.Message):
    __slots__ = ("seconds", "nanos")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NANOS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    nanos: int
    def __init__(self, seconds: _Optional[int] = ..., nanos: _Optional[int] = ...) -> None: ...

class CanonicId(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CanonicIds(_message.Message):
    __slots__ = ("canonic_id",)
    CANONIC_ID_FIELD_NUMBER: _ClassVar[int]
    canonic_id: _containers.RepeatedCompositeFieldContainer[CanonicId]
    def __init__(self, canonic_id: _Optional[_Iterable[_Union[CanonicId, _Mapping]]] = ...) -> None: ...

class FcmRegistration(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class ActionRequestMetadata(_message.Message):
    __slots__ = ("type", "request_uuid", "fmd_client_uuid", "fcm_registration", "unknown_flag")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_UUID_FIELD_NUMBER: _ClassVar[int]
    FMD_CLIENT_UUID_FIELD_NUMBER: _ClassVar[int]
    FCM_REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FLAG_FIELD_NUMBER: _ClassVar[int]
    type: DeviceType
    request_uuid: str
    fmd_client_uuid: str
    fcm_registration: FcmRegistration
    unknown_flag: bool
    def __init__(self, type: _Optional[_Union[DeviceType, str]] = ..., request_uuid: _Optional[str] = ..., fmd_client_uuid: _Optional[str] = ..., fcm_registration: _Optional[_Union[FcmRegistration, _Mapping]] = ..., unknown_flag: _Optional[bool] = ...) -> None: ...

class DeviceUpdate(_message.Message):
    __slots__ = ("fcm_metadata", "device_metadata")
    FCM_METADATA_FIELD_NUMBER: _ClassVar[int]
    DEVICE_METADATA_FIELD_NUMBER: _ClassVar[int]
    fcm_metadata: ActionRequestMetadata
    device_metadata: DeviceMetadata
    def __init__(self, fcm_metadata: _Optional[_Union[ActionRequestMetadata, _Mapping]] = ..., device_metadata: _Optional[_Union[DeviceMetadata, _Mapping]] = ...) -> None: ...

class DeviceMetadata(_message.Message):
    __slots__ = ("identifiers", "information", "user_defined_name")
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    INFORMATION_FIELD_NUMBER: _ClassVar[int]
    USER_DEFINED_NAME_FIELD_NUMBER: _ClassVar[int]
    identifiers: DeviceIdentifiers
    information: DeviceInformation
    user_defined_name: str
    def __init__(self, identifiers: _Optional[_Union[DeviceIdentifiers, _Mapping]] = ..., information: _Optional[_Union[DeviceInformation, _Mapping]] = ..., user_defined_name: _Optional[str] = ...) -> None: ...

class DeviceIdentifiers(_message.Message):
    __slots__ = ("phone_information", "type", "canonic_ids")
    PHONE_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CANONIC_IDS_FIELD_NUMBER: _ClassVar[int]
    phone_information: PhoneInformation
    type: IdentifierType
    canonic_ids: CanonicIds
    def __init__(self, phone_information: _Optional[_Union[PhoneInformation, _Mapping]] = ..., type: _Optional[_Union[IdentifierType, str]] = ..., canonic_ids: _Optional[_Union[CanonicIds, _Mapping]] = ...) -> None: ...

class PhoneInformation(_message.Message):
    __slots__ = ("canonic_ids",)
    CANONIC_IDS_FIELD_NUMBER: _ClassVar[int]
    canonic_ids: CanonicIds
    def __init__(self, canonic_ids: _Optional[_Union[CanonicIds, _Mapping]] = ...) -> None: ...

class DeviceInformation(_message.Message):
    __slots__ = ("registration", "location_information")
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    registration: DeviceRegistration
    location_information: LocationInformation
    def __init__(self, registration: _Optional[_Union[DeviceRegistration, _Mapping]] = ..., location_information: _Optional[_Union[LocationInformation, _Mapping]] = ...) -> None: ...

class DeviceRegistration(_message.Message):
    __slots__ = ("encrypted_user_secrets", "manufacturer", "fast_pair_model_id", "model")
    ENCRYPTED_USER_SECRETS_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    FAST_PAIR_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    encrypted_user_secrets: EncryptedUserSecrets
    manufacturer: str
    fast_pair_model_id: str
    model: str
    def __init__(self, encrypted_user_secrets: _Optional[_Union[EncryptedUserSecrets, _Mapping]] = ..., manufacturer: _Optional[str] = ..., fast_pair_model_id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class EncryptedUserSecrets(_message.Message):
    __slots__ = ("encrypted_identity_key", "owner_key_version")
    ENCRYPTED_IDENTITY_KEY_FIELD_NUMBER: _ClassVar[int]
    OWNER_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    encrypted_identity_key: bytes
    owner_key_version: int
    def __init__(self, encrypted_identity_key: _Optional[bytes] = ..., owner_key_version: _Optional[int] = ...) -> None: ...

class LocationInformation(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: LocationReports
    def __init__(self, reports: _Optional[_Union[LocationReports, _Mapping]] = ...) -> None: ...

class LocationReports(_message.Message):
    __slots__ = ("recent_and_network_locations",)
    RECENT_AND_NETWORK_LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    recent_and_network_locations: RecentAndNetworkLocations
    def __init__(self, recent_and_network_locations: _Optional[_Union[RecentAndNetworkLocations, _Mapping]] = ...) -> None: ...

class RecentAndNetworkLocations(_message.Message):
    __slots__ = ("recent_location", "recent_location_timestamp", "network_locations", "network_location_timestamps")
    RECENT_LOCATION_FIELD_NUMBER: _ClassVar[int]
    RECENT_LOCATION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NETWORK_LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_LOCATION_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    recent_location: LocationReport
    recent_location_timestamp: Time
    network_locations: _containers.RepeatedCompositeFieldContainer[LocationReport]
    network_location_timestamps: _containers.RepeatedCompositeFieldContainer[Time]
    def __init__(self, recent_location: _Optional[_Union[LocationReport, _Mapping]] = ..., recent_location_timestamp: _Optional[_Union[Time, _Mapping]] = ..., network_locations: _Optional[_Iterable[_Union[LocationReport, _Mapping]]] = ..., network_location_timestamps: _Optional[_Iterable[_Union[Time, _Mapping]]] = ...) -> None: ...

class LocationReport(_message.Message):
    __slots__ = ("semantic_location", "geo_location", "status")
    SEMANTIC_LOCATION_FIELD_NUMBER: _ClassVar[int]
    GEO_LOCATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    semantic_location: SemanticLocation
    geo_location: GeoLocation
    status: LocationStatus
    def __init__(self, semantic_location: _Optional[_Union[SemanticLocation, _Mapping]] = ..., geo_location: _Optional[_Union[GeoLocation, _Mapping]] = ..., status: _Optional[_Union[LocationStatus, str]] = ...) -> None: ...

class SemanticLocation(_message.Message):
    __slots__ = ("location_name",)
    LOCATION_NAME_FIELD_NUMBER: _ClassVar[int]
    location_name: str
    def __init__(self, location_name: _Optional[str] = ...) -> None: ...

class GeoLocation(_message.Message):
    __slots__ = ("encrypted_report", "device_time_offset", "accuracy")
    ENCRYPTED_REPORT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TIME_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    encrypted_report: EncryptedReport
    device_time_offset: int
    accuracy: float
    def __init__(self, encrypted_report: _Optional[_Union[EncryptedReport, _Mapping]] = ..., device_time_offset: _Optional[int] = ..., accuracy: _Optional[float] = ...) -> None: ...

class EncryptedReport(_message.Message):
    __slots__ = ("public_key_random", "encrypted_location", "is_own_report")
    PUBLIC_KEY_RANDOM_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_LOCATION_FIELD_NUMBER: _ClassVar[int]
    IS_OWN_REPORT_FIELD_NUMBER: _ClassVar[int]
    public_key_random: bytes
    encrypted_location: bytes
    is_own_report: bool
    def __init__(self, public_key_random: _Optional[bytes] = ..., encrypted_location: _Optional[bytes] = ..., is_own_report: _Optional[bool] = ...) -> None: ...

class PlainLocation(_message.Message):
    __slots__ = ("latitude", "longitude", "altitude")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    ALTITUDE_FIELD_NUMBER: _ClassVar[int]
    latitude: int
    longitude: int
    altitude: int
    def __init__(self, latitude: _Optional[int] = ..., longitude: _Optional[int] = ..., altitude: _Optional[int] = ...) -> None: ...
