"""The decryption chain, path by path, against vectors from the independent test encryptor."""

from __future__ import annotations

import itertools
import os

import pytest
from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF
from ecdsa.curves import SECP160r1
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.sources.google import crypto, curve
from shared.sources.google.errors import DecryptionError
from tests.unit.google import encryptor

PLAINTEXT = encryptor.plain_location(48.8566, 2.3522, 35)


@pytest.fixture
def owner_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def identity_key() -> bytes:
    return os.urandom(32)


def test_gcm_wrapped_identity_key_unwraps_with_the_owner_key(owner_key, identity_key):
    wrapped = encryptor.wrap_identity_key_gcm(identity_key, owner_key)

    assert len(wrapped) == 60
    assert crypto.decrypt_identity_key(wrapped, owner_key) == identity_key


def test_cbc_wrapped_identity_key_unwraps_with_the_owner_key(owner_key, identity_key):
    wrapped = encryptor.wrap_identity_key_cbc(identity_key, owner_key)

    assert len(wrapped) == 48
    assert crypto.decrypt_identity_key(wrapped, owner_key) == identity_key


@pytest.mark.parametrize(
    "wrap", [encryptor.wrap_identity_key_gcm, encryptor.wrap_identity_key_cbc], ids=["gcm", "cbc"]
)
def test_mcu_key_blob_is_bit_inverted_before_unwrapping(wrap, owner_key, identity_key):
    inverted = encryptor.invert_bits(wrap(identity_key, owner_key))

    assert crypto.decrypt_identity_key(inverted, owner_key, mcu=True) == identity_key
    assert crypto.is_mcu_tracker("003200")
    assert not crypto.is_mcu_tracker("a1b2c3")


def test_gcm_wrap_with_a_wrong_owner_key_fails_at_the_tag(owner_key, identity_key):
    wrapped = encryptor.wrap_identity_key_gcm(identity_key, owner_key)

    with pytest.raises(DecryptionError, match="identity key fails its authentication tag"):
        crypto.decrypt_identity_key(wrapped, os.urandom(32))


@pytest.mark.parametrize("length", [0, 32, 47, 59, 61, 64])
def test_identity_key_blob_of_unknown_length_is_a_clear_error(length, owner_key):
    with pytest.raises(DecryptionError, match=rf"has {length} bytes; expected 60 .* or 48"):
        crypto.decrypt_identity_key(os.urandom(length), owner_key)


@pytest.mark.parametrize("text", ["zz" * 32, "ab" * 31, ""])
def test_malformed_owner_key_is_a_clear_error(text):
    with pytest.raises(DecryptionError, match="owner key"):
        crypto.parse_owner_key(text)


def test_owner_key_parses_from_hex(owner_key):
    assert crypto.parse_owner_key(f" {owner_key.hex().upper()}\n") == owner_key


def test_own_report_decrypts_under_sha256_of_the_identity_key(identity_key):
    ciphertext = encryptor.encrypt_own_report(identity_key, PLAINTEXT)

    assert crypto.IdentityKeyDecryptor(identity_key).decrypt_own_report(ciphertext) == PLAINTEXT


def test_own_report_under_another_identity_key_fails_its_tag(identity_key):
    ciphertext = encryptor.encrypt_own_report(os.urandom(32), PLAINTEXT)

    with pytest.raises(DecryptionError, match="own report fails its authentication tag"):
        crypto.IdentityKeyDecryptor(identity_key).decrypt_own_report(ciphertext)


def test_crowdsourced_report_decrypts_with_the_tracker_key_of_its_window(identity_key):
    finder_x, ciphertext = encryptor.encrypt_crowdsourced_report(
        identity_key, PLAINTEXT, 0x0123_4400
    )

    decryptor = crypto.IdentityKeyDecryptor(identity_key)
    assert decryptor.decrypt_crowdsourced_report(finder_x, ciphertext, 0x0123_4400) == PLAINTEXT


def test_time_counter_low_ten_bits_do_not_change_the_key(identity_key):
    finder_x, ciphertext = encryptor.encrypt_crowdsourced_report(
        identity_key, PLAINTEXT, 0x0123_4400
    )
    decryptor = crypto.IdentityKeyDecryptor(identity_key)

    # Same 1024-second window: decrypts; the next window: another key.
    assert decryptor.decrypt_crowdsourced_report(finder_x, ciphertext, 0x0123_47FF) == PLAINTEXT
    with pytest.raises(DecryptionError, match="crowd-sourced report fails"):
        decryptor.decrypt_crowdsourced_report(finder_x, ciphertext, 0x0123_4800)


def test_many_reports_of_one_window_all_decrypt(identity_key):
    decryptor = crypto.IdentityKeyDecryptor(identity_key)
    vectors = [
        (
            encryptor.plain_location(i, -i, i),
            *encryptor.encrypt_crowdsourced_report(
                identity_key, encryptor.plain_location(i, -i, i), 5_000 + i
            ),
        )
        for i in range(5)
    ]

    for i, (plaintext, finder_x, ciphertext) in enumerate(vectors):
        assert decryptor.decrypt_crowdsourced_report(finder_x, ciphertext, 5_000 + i) == plaintext


def test_tampered_crowdsourced_report_fails_its_tag(identity_key):
    finder_x, ciphertext = encryptor.encrypt_crowdsourced_report(identity_key, PLAINTEXT, 0)
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]

    with pytest.raises(DecryptionError, match="crowd-sourced report fails"):
        crypto.IdentityKeyDecryptor(identity_key).decrypt_crowdsourced_report(finder_x, tampered, 0)


def test_finder_key_off_the_curve_is_a_decryption_error(identity_key):
    # Find an x with no point: x³ - 3x + b is a non-residue for about half of all x.
    x = next(x for x in range(2, 100) if _not_on_curve(x))

    with pytest.raises(DecryptionError, match="finder public key is invalid"):
        crypto.IdentityKeyDecryptor(identity_key).decrypt_crowdsourced_report(
            x.to_bytes(20, "big"), os.urandom(32), 0
        )


def test_finder_key_of_wrong_length_is_a_decryption_error(identity_key):
    with pytest.raises(DecryptionError, match="finder public key has 33 bytes"):
        crypto.IdentityKeyDecryptor(identity_key).decrypt_crowdsourced_report(
            os.urandom(33), os.urandom(32), 0
        )


def test_hkdf_matches_rfc5869_case_3():
    # RFC 5869 A.3: SHA-256, zero-length salt and info.
    okm = bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert crypto.hkdf_sha256(bytes([0x0B] * 22)) == okm[:32]


@given(st.binary(min_size=20, max_size=20))
def test_hkdf_matches_pycryptodome(secret):
    assert crypto.hkdf_sha256(secret) == HKDF(secret, 32, None, SHA256)


def test_rotation_block_layout():
    block = crypto.rotation_block(0x1234_56FF)

    assert block == (
        b"\xff" * 11
        + b"\x0a"
        + bytes.fromhex("12345400")
        + b"\x00" * 11
        + b"\x0a"
        + bytes.fromhex("12345400")
    )


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=curve.N - 1),
    point_scalar=st.integers(min_value=1, max_value=curve.N - 1),
)
def test_point_multiplication_matches_ecdsa(k, point_scalar):
    point = SECP160r1.generator * point_scalar
    x, y = curve.lift_x(point.x())

    assert curve.multiply_x(curve.naf_digits(k), x, y) == (point * k).x()


@pytest.mark.parametrize("k", [1, 2, 15, 16, 17, 31, 2**160, curve.N - 1])
def test_point_multiplication_edge_scalars_match_ecdsa(k):
    point = SECP160r1.generator * 7
    x, y = curve.lift_x(point.x())

    assert curve.multiply_x(curve.naf_digits(k), x, y) == (point * k).x()


@given(st.integers(min_value=1, max_value=2**170))
def test_naf_digits_rebuild_the_scalar_and_are_sparse(k):
    digits = curve.naf_digits(k)

    assert sum(d << i for i, d in enumerate(reversed(digits))) == k
    nonzero = [i for i, d in enumerate(digits) if d]
    assert all(d % 2 and -16 < d < 16 for d in digits if d)
    assert all(b - a >= curve.WINDOW for a, b in itertools.pairwise(nonzero))


def _not_on_curve(x: int) -> bool:
    try:
        curve.lift_x(x)
    except curve.NotOnCurve:
        return True
    return False


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=curve.N - 1))
def test_generator_multiplication_matches_ecdsa(k):
    assert curve.generator_multiple_x(k) == (SECP160r1.generator * k).x()


@settings(max_examples=80)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=16, max_size=16),
    plaintext=st.binary(max_size=70),
)
def test_eax_decryption_matches_pycryptodome_eax(key, nonce, plaintext):
    ciphertext, tag = AES.new(key, AES.MODE_EAX, nonce=nonce).encrypt_and_digest(plaintext)

    assert crypto.eax_decrypt(key, nonce, ciphertext, tag) == plaintext
    assert crypto.eax_decrypt(key, nonce, ciphertext, bytes([tag[0] ^ 0x80]) + tag[1:]) is None
    if ciphertext:
        flipped = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
        assert crypto.eax_decrypt(key, nonce, flipped, tag) is None
