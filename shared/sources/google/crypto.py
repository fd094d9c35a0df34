"""Decryption of Google Find My Device location reports: owner key → identity key → reports.

The chain (shared/PROTOCOLS.md §5):

- The tracker's identity key (EIK, 32 bytes) comes wrapped with the account's owner key:
  60 bytes are AES-256-GCM (12-byte IV first, tag last), 48 bytes AES-256-CBC without padding
  (16-byte IV first). Custom MCU trackers store the blob with every bit inverted.
- An own report (empty `public_key_random`) is AES-GCM under SHA-256(EIK).
- A crowd-sourced report was encrypted by a finder for the tracker's rotating public key R = r·G
  on SECP160R1, where r derives from the EIK and the tracker's time counter. The finder sent its
  ephemeral public x(S); the shared secret is x(r·S), the key HKDF-SHA256 of it, the cipher
  AES-EAX with nonce x(R)[12:20] ‖ x(S)[12:20].

`IdentityKeyDecryptor` holds one EIK and caches, per rotation window, r and x(R): every report of
a window shares them, so such a report costs one point multiplication.

Throughput (SPEC.md: ≥ 900 crowd-sourced reports per second on one core; `bench/decrypt_bench.py`)
shaped three choices, each checked against the library it stands in for by the tests: the point
arithmetic is `curve`'s rather than `ecdsa`'s, HKDF is written on `hmac.digest`, and AES-EAX on
AES-ECB (pycryptodome's HKDF and EAX are Python-level and together cost about a quarter of the
budget).

Errors are `DecryptionError`s without a device name; `decode` adds it.
"""

from __future__ import annotations

import hashlib
import hmac

from Crypto.Cipher import AES

from shared.sources.google import curve
from shared.sources.google.errors import DecryptionError, OwnerKeyRefused

OWNER_KEY_BYTES = 32
IDENTITY_KEY_BYTES = 32
GCM_WRAPPED_KEY_BYTES = 60
CBC_WRAPPED_KEY_BYTES = 48
GCM_IV_BYTES = 12
CBC_IV_BYTES = 16
TAG_BYTES = 16
MCU_FAST_PAIR_MODEL_ID = "003200"

# Trackers rotate their key every 1024 s: the low 10 bits of the time counter are dropped.
ROTATION_MASK = ~0x3FF & 0xFFFFFFFF
NONCE_PART_BYTES = 8
HKDF_KEY_BYTES = 32
# RFC 5869: an absent salt is HashLen zero bytes.
_HKDF_ZERO_SALT = bytes(hashlib.sha256().digest_size)
_BLOCK_BITS = 8 * AES.block_size
_MASK_128 = (1 << _BLOCK_BITS) - 1
_CMAC_REDUCTION = 0x87  # x^128 = x^7 + x^2 + x + 1 in CMAC's field
# Distinct time windows cached per identity key; one DeviceUpdate holds a handful.
_WINDOW_CACHE_SIZE = 64

WRONG_OWNER_KEY_HINT = "wrong or stale owner key (its version may have changed)"


def parse_owner_key(owner_key_hex: str) -> bytes:
    """The owner key from its hex form (secrets.json `owner_key`): 32 bytes."""
    try:
        key = bytes.fromhex(owner_key_hex.strip())
    except ValueError:
        raise DecryptionError("owner key is not hexadecimal") from None
    if len(key) != OWNER_KEY_BYTES:
        raise DecryptionError(
            f"owner key must be {OWNER_KEY_BYTES} bytes ({2 * OWNER_KEY_BYTES} hex digits), "
            f"got {len(key)} bytes"
        )
    return key


def decrypt_owner_key(encrypted_owner_key: bytes, shared_key: bytes) -> bytes:
    """The owner key from the Spot API's `encryptedOwnerKey`: AES-256-GCM under the account's
    `shared_key` (secrets.json), 12-byte IV first, tag last (PROTOCOLS.md §5, "Owner key
    renewal"). `DecryptionError` when the tag fails (another account's or a stale shared key)."""
    if len(shared_key) != OWNER_KEY_BYTES:
        raise DecryptionError(f"shared key must be {OWNER_KEY_BYTES} bytes")
    if len(encrypted_owner_key) != GCM_IV_BYTES + OWNER_KEY_BYTES + TAG_BYTES:
        raise DecryptionError(
            f"encrypted owner key has {len(encrypted_owner_key)} bytes; expected "
            f"{GCM_IV_BYTES + OWNER_KEY_BYTES + TAG_BYTES} (AES-GCM)"
        )
    iv, body = encrypted_owner_key[:GCM_IV_BYTES], encrypted_owner_key[GCM_IV_BYTES:]
    cipher = AES.new(shared_key, AES.MODE_GCM, nonce=iv)
    try:
        return cipher.decrypt_and_verify(body[:-TAG_BYTES], body[-TAG_BYTES:])
    except ValueError:
        raise DecryptionError(
            "the owner key from Google fails its authentication tag under the stored shared key"
        ) from None


def is_mcu_tracker(fast_pair_model_id: str) -> bool:
    """Custom MCU trackers: bit-inverted key blob, time counter always 0."""
    return fast_pair_model_id.lower() == MCU_FAST_PAIR_MODEL_ID


def decrypt_identity_key(wrapped: bytes, owner_key: bytes, *, mcu: bool = False) -> bytes:
    """The tracker's identity key (EIK) from its wrapped form; the form is chosen by length."""
    if len(owner_key) != OWNER_KEY_BYTES:
        raise DecryptionError(f"owner key must be {OWNER_KEY_BYTES} bytes")
    if mcu:
        wrapped = bytes(byte ^ 0xFF for byte in wrapped)
    if len(wrapped) == GCM_WRAPPED_KEY_BYTES:
        iv, body = wrapped[:GCM_IV_BYTES], wrapped[GCM_IV_BYTES:]
        cipher = AES.new(owner_key, AES.MODE_GCM, nonce=iv)
        try:
            key = cipher.decrypt_and_verify(body[:-TAG_BYTES], body[-TAG_BYTES:])
        except ValueError:
            raise OwnerKeyRefused(
                f"identity key fails its authentication tag: {WRONG_OWNER_KEY_HINT}"
            ) from None
    elif len(wrapped) == CBC_WRAPPED_KEY_BYTES:
        # No tag: a wrong owner key yields a wrong EIK, which shows when the reports fail theirs.
        iv, body = wrapped[:CBC_IV_BYTES], wrapped[CBC_IV_BYTES:]
        key = AES.new(owner_key, AES.MODE_CBC, iv=iv).decrypt(body)
    else:
        raise DecryptionError(
            f"encrypted identity key has {len(wrapped)} bytes; expected "
            f"{GCM_WRAPPED_KEY_BYTES} (AES-GCM) or {CBC_WRAPPED_KEY_BYTES} (AES-CBC)"
        )
    if len(key) != IDENTITY_KEY_BYTES:
        raise DecryptionError(f"identity key has {len(key)} bytes, expected {IDENTITY_KEY_BYTES}")
    return key


def hkdf_sha256(secret: bytes, length: int = HKDF_KEY_BYTES) -> bytes:
    """HKDF-SHA256 (RFC 5869) with no salt and empty info, up to one hash block of output.

    Written on `hmac.digest` because pycryptodome's HKDF costs about 60 µs per call here.
    """
    pseudo_random_key = hmac.digest(_HKDF_ZERO_SALT, secret, "sha256")
    return hmac.digest(pseudo_random_key, b"\x01", "sha256")[:length]


def _cmac_double(value: int) -> int:
    """Doubling in GF(2^128), as CMAC derives its subkeys."""
    value <<= 1
    return (value & _MASK_128) ^ _CMAC_REDUCTION if value >> _BLOCK_BITS else value


def _block(value: int) -> bytes:
    return value.to_bytes(AES.block_size, "big")


def eax_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes) -> bytes | None:
    """AES-EAX decryption with a 16-byte nonce and no header; None when the tag does not match.

    The same function as pycryptodome's MODE_EAX (the tests compare them), at a sixth of its
    cost: pycryptodome builds three CMAC objects per message. EAX: N = OMAC⁰(nonce),
    H = OMAC¹(header), C = OMAC²(ciphertext), tag = N ⊕ H ⊕ C, plaintext = ciphertext ⊕ the CTR
    keystream from N; OMACᵗ(M) is the CMAC of the block ⟨t⟩ followed by M. Grouping independent
    blocks, three AES-ECB calls do it all for a report-sized message.
    """
    if len(nonce) != AES.block_size or len(tag) != TAG_BYTES:
        raise ValueError("eax_decrypt takes a 16-byte nonce and a 16-byte tag")
    ecb = AES.new(key, AES.MODE_ECB)
    # E(⟨0⟩) seeds the CMAC subkeys and is OMAC⁰'s first CBC state; E(⟨2⟩) is OMAC²'s.
    first = ecb.encrypt(bytes(AES.block_size) + _block(2))
    seed = int.from_bytes(first[: AES.block_size], "big")
    k1 = _cmac_double(seed)
    # OMAC⁰(nonce) and OMAC¹(empty header): each ends on one full block, masked with K1.
    second = ecb.encrypt(_block(seed ^ int.from_bytes(nonce, "big") ^ k1) + _block(1 ^ k1))
    counter = int.from_bytes(second[: AES.block_size], "big")
    header_mac = int.from_bytes(second[AES.block_size :], "big")
    # OMAC²(ciphertext): CBC-MAC from E(⟨2⟩); the last block masked with K1 if full, else
    # padded with 10* and masked with K2.
    if ciphertext:
        state = int.from_bytes(first[AES.block_size :], "big")
        last_start = (len(ciphertext) - 1) // AES.block_size * AES.block_size
        for start in range(0, last_start, AES.block_size):
            chunk = int.from_bytes(ciphertext[start : start + AES.block_size], "big")
            state = int.from_bytes(ecb.encrypt(_block(state ^ chunk)), "big")
        last = ciphertext[last_start:]
        if len(last) == AES.block_size:
            last_input = state ^ int.from_bytes(last, "big") ^ k1
        else:
            padded = last + b"\x80" + bytes(AES.block_size - 1 - len(last))
            last_input = state ^ int.from_bytes(padded, "big") ^ _cmac_double(k1)
    else:
        last_input = 2 ^ k1
    blocks = -(-len(ciphertext) // AES.block_size)
    counters = b"".join(_block((counter + i) & _MASK_128) for i in range(blocks))
    third = ecb.encrypt(_block(last_input) + counters)
    expected = _block(counter ^ header_mac ^ int.from_bytes(third[: AES.block_size], "big"))
    if not hmac.compare_digest(expected, tag):
        return None
    keystream = third[AES.block_size : AES.block_size + len(ciphertext)]
    plain = int.from_bytes(ciphertext, "big") ^ int.from_bytes(keystream, "big")
    return plain.to_bytes(len(ciphertext), "big")


def rotation_block(time_counter: int) -> bytes:
    """The 32-byte block whose AES-ECB image under the EIK is the tracker's private scalar."""
    masked = (time_counter & ROTATION_MASK).to_bytes(4, "big")
    return b"\xff" * 11 + b"\x0a" + masked + b"\x00" * 11 + b"\x0a" + masked


class IdentityKeyDecryptor:
    """Decrypts the reports of one tracker, given its identity key (EIK)."""

    def __init__(self, identity_key: bytes) -> None:
        if len(identity_key) != IDENTITY_KEY_BYTES:
            raise DecryptionError(f"identity key must be {IDENTITY_KEY_BYTES} bytes")
        self._identity_key = identity_key
        self._own_report_key = hashlib.sha256(identity_key).digest()
        # masked time counter → (NAF digits of r, x(R)[12:20])
        self._windows: dict[int, tuple[tuple[int, ...], bytes]] = {}

    def decrypt_own_report(self, encrypted: bytes) -> bytes:
        """An own report: AES-GCM under SHA-256(EIK), 12-byte IV first, tag last."""
        if len(encrypted) < GCM_IV_BYTES + TAG_BYTES:
            raise DecryptionError(f"own report too short ({len(encrypted)} bytes)")
        cipher = AES.new(self._own_report_key, AES.MODE_GCM, nonce=encrypted[:GCM_IV_BYTES])
        try:
            return cipher.decrypt_and_verify(
                encrypted[GCM_IV_BYTES:-TAG_BYTES], encrypted[-TAG_BYTES:]
            )
        except ValueError:
            raise DecryptionError("own report fails its authentication tag") from None

    def decrypt_crowdsourced_report(
        self, public_key_random: bytes, encrypted: bytes, time_counter: int
    ) -> bytes:
        """A crowd-sourced report: ECDH on SECP160R1, HKDF-SHA256, AES-EAX (tag last)."""
        if len(public_key_random) != curve.COORDINATE_BYTES:
            raise DecryptionError(
                f"finder public key has {len(public_key_random)} bytes, "
                f"expected {curve.COORDINATE_BYTES}"
            )
        if len(encrypted) < TAG_BYTES:
            raise DecryptionError(f"crowd-sourced report too short ({len(encrypted)} bytes)")
        digits, rotating_nonce_part = self._window(time_counter)
        try:
            finder_x, finder_y = curve.lift_x(int.from_bytes(public_key_random, "big"))
        except curve.NotOnCurve as exc:
            raise DecryptionError(f"finder public key is invalid: {exc}") from None
        shared_x = curve.multiply_x(digits, finder_x, finder_y)
        key = hkdf_sha256(shared_x.to_bytes(curve.COORDINATE_BYTES, "big"))
        nonce = rotating_nonce_part + public_key_random[-NONCE_PART_BYTES:]
        plaintext = eax_decrypt(key, nonce, encrypted[:-TAG_BYTES], encrypted[-TAG_BYTES:])
        if plaintext is None:
            raise DecryptionError("crowd-sourced report fails its authentication tag")
        return plaintext

    def _window(self, time_counter: int) -> tuple[tuple[int, ...], bytes]:
        masked = time_counter & ROTATION_MASK
        cached = self._windows.get(masked)
        if cached is not None:
            return cached
        block = AES.new(self._identity_key, AES.MODE_ECB).encrypt(rotation_block(masked))
        scalar = int.from_bytes(block, "big") % curve.N
        if scalar == 0:
            raise DecryptionError("identity key yields a null private scalar for this window")
        rotating_x = curve.generator_multiple_x(scalar).to_bytes(curve.COORDINATE_BYTES, "big")
        cached = (curve.naf_digits(scalar), rotating_x[-NONCE_PART_BYTES:])
        if len(self._windows) >= _WINDOW_CACHE_SIZE:
            self._windows.clear()
        self._windows[masked] = cached
        return cached
