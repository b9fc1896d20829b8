"""AES modes 5 and 7 primitives and the key store (mbuskit.security)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mbuskit.codec import security
from mbuskit.errors import MBusError, SecurityError

NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
KEY = bytes(range(16))


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _dbl(block: bytes) -> bytes:
    n = int.from_bytes(block, "big") << 1
    if n >> 128:
        n = (n & ((1 << 128) - 1)) ^ 0x87
    return n.to_bytes(16, "big")


def test_config_word_fields() -> None:
    # 0x2550: synchronous, mode 5, 5 blocks (Kamstrup heat meter bytes 50 25)
    assert security.security_mode(0x2550) == 5
    assert security.encrypted_blocks(0x2550) == 5
    assert security.with_blocks(0x2550, 3) == 0x2530
    with pytest.raises(SecurityError):
        security.with_blocks(0, 16)


def test_config_flags() -> None:
    assert security.config_flags(0x2550) == ("synchronous", "content 0")
    assert security.config_flags(0xC000) == ("bidirectional", "accessibility")
    assert security.config_flags(0x0507) == ("content 1", "repeated access", "hop counter")
    assert security.config_flags(0xFFFF) == ("bidirectional", "accessibility", "synchronous")


def test_mode5_iv_layout() -> None:
    iv = security.mode5_iv(b"\x2d\x2c", bytes.fromhex("20918314"), 0x01, 0x02, 0x07)
    assert iv == bytes.fromhex("2d2c2091831401020707070707070707")
    with pytest.raises(SecurityError):
        security.mode5_iv(b"\x2d", b"\x00" * 4, 1, 2, 3)


def test_cbc_matches_nist_sp800_38a_first_block() -> None:
    # NIST SP 800-38A F.2.1: our CBC call is plain AES-CBC once the data is block-aligned
    iv = bytes(range(16))
    plain = bytes.fromhex("2f2f") + bytes(14)
    ours = security.encrypt_cbc(NIST_KEY, iv, plain)
    assert ours == _aes_ecb(NIST_KEY, bytes(a ^ b for a, b in zip(plain, iv, strict=True)))
    nist = Cipher(algorithms.AES(NIST_KEY), modes.CBC(iv)).encryptor()
    assert nist.update(bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")) == bytes.fromhex(
        "7649abac8119b246cee98e9b12e9197d")


# Published mode 5 example: Amber Wireless AMB8426-M manual V2.4 (Nov. 2013), page 35
# (https://manualshive.com/en/manual/amber-wireless/amb8426-m/2919961?page=35): manufacturer
# A2 05, ID 12345678, version 00, device type 03, access number 35h, configuration 0510h
# (mode 5, one block). The key is 00 01 .. 0F (the manual's example key).
AMBER_CIPHER = bytes.fromhex("1E34C77CFE6C59B154B663297FE6C3F7")
AMBER_PLAIN = bytes.fromhex("2F2F007C085453455420434E452F2F2F")


def test_published_mode5_vector() -> None:
    iv = security.mode5_iv(bytes.fromhex("A205"), bytes.fromhex("78563412"), 0x00, 0x03, 0x35)
    assert security.decrypt_cbc(KEY, iv, AMBER_CIPHER) == AMBER_PLAIN
    assert security.encrypt_cbc(KEY, iv, AMBER_PLAIN[:13]) == AMBER_CIPHER


def test_pad_adds_check_bytes_and_fillers() -> None:
    assert security.pad(b"\x04\x06") == b"\x2f\x2f\x04\x06" + b"\x2f" * 12
    assert security.pad(b"\x2f\x2f" + b"\x00" * 14) == b"\x2f\x2f" + b"\x00" * 14
    assert len(security.pad(b"\x01" * 15)) == 32


def test_round_trip_and_wrong_key() -> None:
    iv = security.mode5_iv(b"\x2d\x2c", bytes.fromhex("20918314"), 1, 2, 9)
    body = bytes.fromhex("0406d2040000042209000000")
    cipher = security.encrypt_cbc(KEY, iv, body)
    assert len(cipher) == 16
    plain = security.decrypt_cbc(KEY, iv, cipher)
    assert plain.startswith(b"\x2f\x2f" + body)
    with pytest.raises(SecurityError, match="wrong key") as info:
        security.decrypt_cbc(bytes(16), iv, cipher, meter="148391202D2C0102")
    assert info.value.meter == "148391202D2C0102"
    assert "148391202D2C0102" in str(info.value)


def test_decrypt_refuses_partial_blocks_and_bad_keys() -> None:
    with pytest.raises(SecurityError, match="16-byte blocks"):
        security.decrypt_cbc(KEY, bytes(16), b"\x00" * 17)
    with pytest.raises(SecurityError, match="16 bytes"):
        security.decrypt_cbc(b"\x00" * 15, bytes(16), b"\x00" * 16)


def test_too_many_blocks_refused() -> None:
    with pytest.raises(SecurityError, match="15"):
        security.encrypt_cbc(KEY, bytes(16), b"\x00" * 16 * 15)


def test_cmac_subkey_is_nist() -> None:
    # NIST SP 800-38B D.1: K1 for the example key; checks our independent CMAC helper below
    assert _dbl(_aes_ecb(NIST_KEY, bytes(16))) == bytes.fromhex(
        "fbeed618357133667c85e08f7236a8de")


@pytest.mark.parametrize("derivation", [security.KDF_ENC_FROM_METER, security.KDF_MAC_TO_METER])
def test_mode7_key_derivation_layout(derivation: int) -> None:
    # CMAC of one complete block M is AES(K, M xor K1): an independent computation of the
    # OMS KDF input DC || counter (LSB first) || ID (wire order) || 07 x 7
    ident = bytes.fromhex("78563412")
    message = bytes((derivation,)) + (0x01020304).to_bytes(4, "little") + ident + b"\x07" * 7
    k1 = _dbl(_aes_ecb(NIST_KEY, bytes(16)))
    expected = _aes_ecb(NIST_KEY, bytes(a ^ b for a, b in zip(message, k1, strict=True)))
    assert security.mode7_key(NIST_KEY, 0x01020304, ident, derivation=derivation) == expected


def test_mode7_key_input_checks() -> None:
    with pytest.raises(SecurityError):
        security.mode7_key(KEY, 1 << 32, b"\x00" * 4)
    with pytest.raises(SecurityError):
        security.mode7_key(KEY, 1, b"\x00" * 3)


# ---------------------------------------------------------------------------------- key store

def test_keystore_lookup_prefers_full_address() -> None:
    store = security.KeyStore({"14839120": KEY, "148391202d2c0102": "FF" * 16})
    assert store.lookup("148391202D2C0102") == b"\xff" * 16
    assert store.lookup("148391202D2C0103") == KEY  # same ID, other version: falls back to ID
    assert store.lookup("99999999") is None
    assert "14839120" in store and len(store) == 2


def test_keystore_never_shows_keys() -> None:
    store = security.KeyStore({"14839120": "00112233445566778899AABBCCDDEEFF"})
    for text in (repr(store), str(store)):
        assert "0011" not in text and "redacted" in text


def test_keystore_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# meter keys\n\n14839120 = 000102030405060708090a0b0c0d0e0f\n"
                    "148391202D2C0102=FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF  # full address\n")
    store = security.KeyStore.load(path)
    assert store.lookup("14839120") == KEY
    assert list(store) == ["14839120", "148391202D2C0102"]


@pytest.mark.parametrize(("text", "line"), [
    ("14839120 = 0011\n", 1),
    ("# ok\n14839120 00112233445566778899AABBCCDDEEFF\n", 2),
    ("\n\nXYZ = 00112233445566778899AABBCCDDEEFF\n", 3),
])
def test_keystore_errors_name_the_line_not_the_key(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    with pytest.raises(SecurityError) as info:
        security.KeyStore.load(path)
    assert f"{path}:{line}:" in str(info.value)
    assert "00112233445566778899" not in str(info.value)


def test_keystore_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MBusError, match="cannot read key file"):
        security.KeyStore.load(tmp_path / "nope")
