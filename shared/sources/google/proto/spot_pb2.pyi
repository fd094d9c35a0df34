from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetEidInfoForE2eeDevicesRequest(_message.Message):
    __slots__ = ("owner_key_version", "has_owner_key_version")
    OWNER_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HAS_OWNER_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    owner_key_version: int
    has_owner_key_version: bool
    def __init__(self, owner_key_version: _Optional[int] = ..., has_owner_key_version: _Optional[bool] = ...) -> None: ...

class GetEidInfoForE2eeDevicesResponse(_message.Message):
    __slots__ = ("encrypted_owner_key_and_metadata",)
    ENCRYPTED_OWNER_KEY_AND_METADATA_FIELD_NUMBER: _ClassVar[int]
    encrypted_owner_key_and_metadata: EncryptedOwnerKeyAndMetadata
    def __init__(self, encrypted_owner_key_and_metadata: _Optional[_Union[EncryptedOwnerKeyAndMetadata, _Mapping]] = ...) -> None: ...

class EncryptedOwnerKeyAndMetadata(_message.Message):
    __slots__ = ("encrypted_owner_key", "owner_key_version", "security_domain")
    ENCRYPTED_OWNER_KEY_FIELD_NUMBER: _ClassVar[int]
    OWNER_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECURITY_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    encrypted_owner_key: bytes
    owner_key_version: int
    security_domain: str
    def __init__(self, encrypted_owner_key: _Optional[bytes] = ..., owner_key_version: _Optional[int] = ..., security_domain: _Optional[str] = ...) -> None: ...
