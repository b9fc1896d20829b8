"""AES-128 for M-Bus telegrams (EN 13757-3 / EN 13757-7, OMS vol. 2 security modes 5 and 7).

Pure byte functions: the telegram layer hands in the header fields and the payload, this
module never parses a frame. The key store maps meters to keys and never shows a key.

Mode 5 (EN 13757-7 clause 7.2.4.5): AES-128-CBC, IV = manufacturer (2 bytes, wire order) ||
ID (4 bytes, wire order) || version || medium || 8 x access number. The plaintext starts with
the check bytes 2F 2F and is padded with 2F idle fillers to whole 16-byte blocks; the number
of encrypted blocks is in bits 7-4 of the configuration word.

Mode 7 (EN 13757-7 clause 7.2.4.7, OMS vol. 2 clause 9.2.5): AES-128-CBC with IV = 0 and an
ephemeral key K_enc = AES-CMAC(K, 00 || counter (4, LSB first) || ID (4, wire order) || 07 x 7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import SecurityError

BLOCK = 16
CHECK_BYTES = b"\x2f\x2f"
FILLER = 0x2F

MODE_NONE = 0
MODE_AES_CBC_IV = 5  # "mode 5"
MODE_AES_CBC_NO_IV = 7  # "mode 7", ephemeral key

# Derivation constants of the mode 7 KDF (OMS vol. 2 table 21): first byte of the CMAC input
KDF_ENC_FROM_METER = 0x00
KDF_MAC_FROM_METER = 0x01
KDF_ENC_TO_METER = 0x10
KDF_MAC_TO_METER = 0x11


def security_mode(config: int) -> int:
    """Security mode from the configuration word: bits 12-8 (EN 13757-7 table 19)."""
    return (config >> 8) & 0x1F


def encrypted_blocks(config: int) -> int:
    """Number of encrypted 16-byte blocks: bits 7-4 of the configuration word (modes 5 and 7)."""
    return (config >> 4) & 0x0F


def config_flags(config: int) -> tuple[str, ...]:
    """Named bits of the configuration word (EN 13757-7 table 18, OMS vol. 2 table 20):
    bit 15 bidirectional, 14 accessibility, 13 synchronous; in modes 5 and 7 also bits 3-2
    content of message, bit 1 repeated access, bit 0 hop counter."""
    out = [name for bit, name in ((15, "bidirectional"), (14, "accessibility"),
                                  (13, "synchronous")) if config >> bit & 1]
    if security_mode(config) in (MODE_AES_CBC_IV, MODE_AES_CBC_NO_IV):
        out.append(f"content {(config >> 2) & 3}")
        out.extend(name for bit, name in ((1, "repeated access"), (0, "hop counter"))
                   if config >> bit & 1)
    return tuple(out)


def with_blocks(config: int, blocks: int) -> int:
    if not 0 <= blocks <= 15:
        raise SecurityError(f"{blocks} encrypted blocks do not fit the configuration word (0-15)")
    return (config & ~0xF0) | (blocks << 4)


def mode5_iv(manufacturer: bytes, id_raw: bytes, version: int, medium: int, access: int) -> bytes:
    """The mode 5 initialisation vector from the long header (bytes in wire order)."""
    if len(manufacturer) != 2 or len(id_raw) != 4:
        raise SecurityError("mode 5 IV needs 2 manufacturer bytes and 4 ID bytes")
    return bytes(manufacturer) + bytes(id_raw) + bytes((version, medium)) + bytes((access,)) * 8


def _check_key(key: bytes, meter: str | None) -> None:
    if len(key) != 16:
        raise SecurityError(f"AES-128 key must be 16 bytes, got {len(key)}", meter=meter)


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


def pad(plaintext: bytes) -> bytes:
    """Prefix the 2F 2F check bytes if missing, then pad with 2F to whole blocks."""
    if not plaintext.startswith(CHECK_BYTES):
        plaintext = CHECK_BYTES + plaintext
    rest = -len(plaintext) % BLOCK
    return plaintext + bytes((FILLER,)) * rest


def encrypt_cbc(key: bytes, iv: bytes, plaintext: bytes, *, meter: str | None = None) -> bytes:
    """Encrypt ``plaintext`` (padded here with :func:`pad`); returns whole blocks."""
    _check_key(key, meter)
    data = pad(plaintext)
    if len(data) // BLOCK > 15:
        raise SecurityError(f"{len(data) // BLOCK} blocks exceed the 15 a header can count",
                            meter=meter)
    return _cbc(key, iv, data, encrypt=True)


def decrypt_cbc(key: bytes, iv: bytes, ciphertext: bytes, *, meter: str | None = None) -> bytes:
    """Decrypt whole blocks and verify the 2F 2F check bytes.

    A wrong key gives random bytes; the check bytes are the only way to tell, so a mismatch
    raises SecurityError rather than hand back garbage values.
    """
    _check_key(key, meter)
    if not ciphertext or len(ciphertext) % BLOCK:
        raise SecurityError(f"encrypted part is {len(ciphertext)} bytes, not whole 16-byte blocks",
                            meter=meter)
    plain = _cbc(key, iv, ciphertext, encrypt=False)
    if not plain.startswith(CHECK_BYTES):
        raise SecurityError("decryption failed: wrong key (check bytes are not 2F 2F)",
                            meter=meter)
    return plain


def mode7_key(key: bytes, counter: int, id_raw: bytes, *, derivation: int = KDF_ENC_FROM_METER
              ) -> bytes:
    """Ephemeral mode 7 key (OMS vol. 2 clause 9.5.3): AES-CMAC over DC || C || ID || 07 x 7."""
    _check_key(key, None)
    if len(id_raw) != 4:
        raise SecurityError("mode 7 key derivation needs the 4 ID bytes")
    if not 0 <= counter <= 0xFFFFFFFF:
        raise SecurityError(f"message counter {counter} is not 32 bits")
    message = bytes((derivation,)) + counter.to_bytes(4, "little") + bytes(id_raw) + b"\x07" * 7
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


ZERO_IV = bytes(BLOCK)


# ---------------------------------------------------------------------------------------------
# key store

_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")
_METER = re.compile(r"[0-9A-Fa-f]{8}([0-9A-Fa-f]{8})?")


def parse_key(text: str) -> bytes:
    """A 32-hex-digit AES-128 key; the message never repeats the text (it may be a key)."""
    cleaned = text.strip().replace(" ", "")
    if not _HEX32.fullmatch(cleaned):
        raise SecurityError("a key must be exactly 32 hex digits")
    return bytes.fromhex(cleaned)


class KeyStore:
    """Keys by meter: 'IIIIIIII' (8 ID digits) or 'IIIIIIIIMMMMVVDD' (libmbus secondary form).

    A full secondary address wins over a bare ID. ``repr`` and ``str`` show only the count.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str, bytes | str] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for meter, key in (keys or {}).items():
            self.add(meter, key)

    def add(self, meter: str, key: bytes | str) -> None:
        name = str(meter).strip().upper()
        if not _METER.fullmatch(name):
            raise SecurityError(f"meter '{name}' is neither 8 ID digits nor a 16-digit "
                                "secondary address")
        raw = parse_key(key) if isinstance(key, str) else bytes(key)
        _check_key(raw, name)
        self._keys[name] = raw

    def lookup(self, secondary: str) -> bytes | None:
        """Key for a meter given its secondary address string (or bare ID)."""
        name = secondary.upper()
        key = self._keys.get(name)
        if key is None and len(name) == 16:
            key = self._keys.get(name[:8])
        return key

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, meter: object) -> bool:
        return isinstance(meter, str) and self.lookup(meter) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __repr__(self) -> str:
        return f"KeyStore({len(self._keys)} keys, redacted)"

    __str__ = __repr__

    @classmethod
    def from_lines(cls, lines: Iterable[str], *, source: str = "<keys>") -> KeyStore:
        """Parse 'METER = KEY' lines; '#' starts a comment. Errors name the line, not the key."""
        store = cls()
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            meter, sep, key = text.partition("=")
            if not sep:
                raise SecurityError(f"{source}:{number}: expected 'METER = 32 hex digits'")
            try:
                store.add(meter.strip(), parse_key(key))
            except SecurityError as exc:
                raise SecurityError(f"{source}:{number}: {exc}") from None
        return store

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityError(f"cannot read key file {p}: {exc.__class__.__name__}") from None
        return cls.from_lines(text.splitlines(), source=str(p))


__all__ = [
    "BLOCK",
    "CHECK_BYTES",
    "KDF_ENC_FROM_METER",
    "KDF_ENC_TO_METER",
    "KDF_MAC_FROM_METER",
    "KDF_MAC_TO_METER",
    "MODE_AES_CBC_IV",
    "MODE_AES_CBC_NO_IV",
    "MODE_NONE",
    "ZERO_IV",
    "KeyStore",
    "config_flags",
    "decrypt_cbc",
    "encrypt_cbc",
    "encrypted_blocks",
    "mode5_iv",
    "mode7_key",
    "pad",
    "parse_key",
    "security_mode",
    "with_blocks",
]
