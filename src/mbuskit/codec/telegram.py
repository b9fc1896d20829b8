"""EN 13757-3 application layer: the Telegram, its decoder, its encoder and encryption glue.

``decode_telegram`` turns a long frame into a :class:`Telegram`; ``encode_telegram`` gives back
the exact frame: header fields keep their wire bytes (IDs with non-BCD digits exist in the
field), records keep theirs, and encrypted payloads are re-sent as the ciphertext received.
The CI decides what follows the CI byte (``ci``): a header (``header``), a selection
(``selection``), an error or alarm byte, or data records (``records``); encrypted payloads
(security mode 5, EN 13757-7 clause 7.2.4.5) are opened with ``security``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from ..errors import DecodeError, EncodeError, SecurityError
from . import records as _rec
from . import security
from .ci import (
    APPLICATION_ERRORS,
    CI,
    FIXED_UNIT_SAME_HISTORIC,
    FIXED_UNITS,
    LONG_CIS,
    MSB_CIS,
    RECORD_CIS,
    SHORT_CIS,
    is_manufacturer_ci,
)
from .header import (
    FixedHeader,
    Header,
    LongHeader,
    SecondaryAddress,
    ShortHeader,
    parse_fixed_header,
    parse_long_header,
    parse_short_header,
)
from .link import LongFrame, decode_frame
from .records import DataRecord, FunctionField, RecordKind
from .selection import Selection, decode_selection
from .timing import baud_of_ci


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Where lenient decoding gave up: offset into the application data (after CI)."""

    offset: int
    reason: str
    record: int | None = None

    def __str__(self) -> str:
        where = f"record {self.record}, " if self.record is not None else ""
        return f"{self.reason} ({where}offset {self.offset})"


@dataclass(frozen=True, slots=True)
class Telegram:
    control: int
    address: int
    ci: int
    header: Header | None = None
    records: tuple[DataRecord, ...] = ()
    error_code: int | None = None  # CI 70h
    diagnostics: tuple[Diagnostic, ...] = ()  # fields up to here in docs/contracts.md order
    alarm: int | None = None  # CI 71h
    subcode: int | None = None  # CI 50h application reset subcode
    selection: Selection | None = None  # CI 52h / 56h
    encrypted: bool = False  # the payload is encrypted on the wire
    decrypted: bool = False  # ... and ``records`` hold the plaintext
    # Wire bytes not represented by the fields above: for an encrypted telegram everything
    # after the header (ciphertext and any plain tail), else an undecodable tail or the data
    # of a manufacturer-specific or unknown CI. Encoding appends them verbatim.
    payload: bytes = b""

    @property
    def baud(self) -> int | None:
        return baud_of_ci(self.ci)

    @property
    def secondary_address(self) -> SecondaryAddress | None:
        return self.header.address if isinstance(self.header, LongHeader) else None

    @property
    def error_text(self) -> str | None:
        if self.error_code is None:
            return None if self.ci != CI.APPLICATION_ERROR else APPLICATION_ERRORS[0]
        return APPLICATION_ERRORS.get(self.error_code, f"Unknown error {self.error_code:#04x}")

    @property
    def more_records_follow(self) -> bool:
        return bool(self.records) and self.records[-1].more_records_follow

    @property
    def meter(self) -> str | None:
        """The meter's name for messages: its secondary address or its ID."""
        h = self.header
        if isinstance(h, LongHeader):
            return str(h.address)
        if isinstance(h, FixedHeader):
            assert h.id_raw is not None
            return h.id_raw[::-1].hex().upper()
        return None


def _records_msb(payload: bytes, offset: int, strict: bool, diags: list[Diagnostic],
                 from_master: bool = False) -> list[DataRecord]:
    # Mode 2 (CI 76h/55h): record layout is the same, only value bytes are MSB first. Decode
    # once for the boundaries, reverse each fixed-size value, decode again for the values, and
    # put the wire bytes back so that encoding stays exact.
    first = _records(payload, offset, strict, diags, from_master)
    swapped = bytearray(payload[:offset])
    for rec in first:
        if rec.kind is RecordKind.DATA and rec.data and (rec.dif & 0x0F) != 0x0D:
            head = rec.raw[: len(rec.raw) - len(rec.data)]
            swapped += head + rec.data[::-1]
        else:
            swapped += rec.raw
    swapped += payload[len(swapped):]
    second = _records(bytes(swapped), offset, strict, [], from_master)
    return [dataclasses.replace(b, raw=a.raw, data=a.data) for a, b in zip(first, second,
                                                                            strict=False)]


def _records(payload: bytes, offset: int, strict: bool, diags: list[Diagnostic],
             from_master: bool = False) -> list[DataRecord]:
    found: list[_rec.Diagnostic] = []
    recs = _rec.decode_records(payload, offset, strict=strict, diagnostics=found,
                               from_master=from_master)
    diags.extend(Diagnostic(d.offset, d.reason, d.record) for d in found)
    return recs


def _fixed_records(h: FixedHeader, counters: bytes, msb: bool) -> tuple[DataRecord, ...]:
    out = []
    unit1 = h.unit1 & 0x3F
    for n, (wire_code, raw) in enumerate(((unit1, counters[:4]),
                                          (h.unit2 & 0x3F, counters[4:]))):
        code, storage = wire_code, 1 if h.stored else 0
        if n == 1 and code == FIXED_UNIT_SAME_HISTORIC:
            code, storage = unit1, 1
        quantity, unit, exp = FIXED_UNITS.get(code, ("reserved", "", 0))
        wire = raw[::-1] if msb else raw
        if h.binary_counters:
            number = int.from_bytes(wire, "little", signed=True)
        else:
            digits = wire[::-1].hex()
            if not digits.isdigit():
                raise DecodeError(f"fixed counter {n + 1} is not BCD: {digits}", offset=8 + 4 * n)
            number = int(digits)
        value: int | Decimal = number * 10**exp if exp >= 0 else Decimal(number).scaleb(exp)
        out.append(DataRecord(raw=bytes(raw), kind=RecordKind.DATA,
                              dif=0x04 if h.binary_counters else 0x0C, data=bytes(raw),
                              function=FunctionField.INSTANTANEOUS, storage=storage,
                              quantity=quantity, unit=unit, value=value,
                              description=f"fixed counter {n + 1}"))
    return tuple(out)


# What decode_telegram accepts as keys: a store that maps meters to keys, one key for
# whatever is encrypted, or None when nothing may be decrypted.
KeySource = security.KeyStore | bytes | None

# Security modes that mean an encrypted payload (EN 13757-7 table 19: DES 2-4, AES 5/7-10,
# TLS 13). Other values occur in pre-2013 meters whose "signature" word was free (FFFF in the
# libmbus corpus), so those payloads are read as plain records.
_CIPHER_MODES = frozenset({2, 3, 4, 5, 7, 8, 9, 10, 13})


def _key_for(keys: KeySource, meter: str | None) -> bytes | None:
    if keys is None:
        return None
    if isinstance(keys, bytes | bytearray):
        return bytes(keys)
    return keys.lookup(meter) if meter else None


def _decrypt(h: LongHeader | ShortHeader, body: bytes, keys: KeySource, meter: str | None
             ) -> tuple[bytes, int]:
    """Plaintext of the encrypted blocks followed by the plain tail, and the plaintext length."""
    mode = h.security_mode
    n = h.encrypted_blocks * security.BLOCK
    if n == 0 or n > len(body):
        raise SecurityError(f"header announces {h.encrypted_blocks} encrypted blocks, "
                            f"{len(body)} bytes follow", meter=meter)
    if not isinstance(h, LongHeader):
        # The IV of a short-header telegram uses the link-layer address of wireless M-Bus,
        # which a wired frame does not carry (EN 13757-7 7.2.4.5).
        raise SecurityError("short-header encryption needs the wireless link address",
                            meter=meter)
    if mode != security.MODE_AES_CBC_IV:
        raise SecurityError(f"security mode {mode} is not supported on wired frames "
                            "(mode 7 needs the AFL message counter)", meter=meter)
    key = _key_for(keys, meter)
    if key is None:
        raise SecurityError("encrypted telegram and no key for it", meter=meter)
    assert h.id_raw is not None and h.manufacturer_code is not None
    iv = security.mode5_iv(h.manufacturer_code.to_bytes(2, "little"), h.id_raw, h.version,
                           h.medium, h.access_number)
    plain = security.decrypt_cbc(key, iv, body[:n], meter=meter)
    return plain + body[n:], n


def decode_telegram(frame: LongFrame | bytes | bytearray, *, keys: KeySource = None,
                    strict: bool = True) -> Telegram:
    """Decode the application layer of a long frame.

    ``keys``: a KeyStore or a single 16-byte key for encrypted telegrams. ``strict=False``
    returns what decoded before damage after a valid header, with ``diagnostics``.
    """
    if not isinstance(frame, LongFrame):
        decoded = decode_frame(frame)
        if not isinstance(decoded, LongFrame):
            raise DecodeError(f"{type(decoded).__name__} carries no telegram", offset=0,
                              expected="long frame")
        frame = decoded
    c, a, ci, data = frame.control, frame.address, frame.ci, bytes(frame.data)
    diags: list[Diagnostic] = []
    baud = baud_of_ci(ci)
    if baud is not None:
        if data:
            raise DecodeError(f"baud switch CI {ci:02X} carries {len(data)} data bytes", offset=0)
        return Telegram(c, a, ci)
    if ci == CI.APPLICATION_RESET:
        if len(data) > 1:
            raise DecodeError("application reset has at most one subcode byte", offset=1)
        return Telegram(c, a, ci, subcode=data[0] if data else None)
    if ci in (CI.SELECTION, CI.DESELECTION):
        return Telegram(c, a, ci, selection=decode_selection(data))
    if ci == CI.APPLICATION_ERROR:
        return Telegram(c, a, ci, error_code=data[0] if data else None,
                                   payload=data[1:])
    if ci == CI.ALARM:
        return Telegram(c, a, ci, alarm=data[0] if data else None, payload=data[1:])
    if ci in (CI.RESPONSE_FIXED, CI.RESPONSE_FIXED_MSB):
        if len(data) != 16:
            raise DecodeError(f"fixed data structure is 16 bytes, got {len(data)}",
                              offset=min(len(data), 16), expected="16 bytes")
        msb = ci == CI.RESPONSE_FIXED_MSB
        fh = parse_fixed_header(data, msb)
        return Telegram(c, a, ci, header=fh, records=_fixed_records(fh, data[8:], msb))
    if is_manufacturer_ci(ci):
        return Telegram(c, a, ci, payload=data)

    header: Header | None
    if ci in LONG_CIS:
        header = parse_long_header(data, ci == CI.RESPONSE_LONG_MSB)
        start = 13 if header.config_ext is not None else 12
    elif ci in SHORT_CIS:
        header = parse_short_header(data)
        start = 5 if header.config_ext is not None else 4
    elif ci in RECORD_CIS:
        header, start = None, 0
    else:
        if strict:
            raise DecodeError(f"unknown CI {ci:02X}", offset=0, expected="an EN 13757-3 CI")
        return Telegram(c, a, ci, payload=data,
                                   diagnostics=(Diagnostic(0, f"unknown CI {ci:02X}"),))
    msb = ci in MSB_CIS
    # EN 13757-3 6.x: VIFE 00h-0Fh are object actions towards a meter, record errors from it
    from_master = bool(frame.control & 0x40)
    if isinstance(header, LongHeader | ShortHeader) and header.security_mode in _CIPHER_MODES:
        meter = str(header.address) if isinstance(header, LongHeader) else None
        try:
            plain, _ = _decrypt(header, data[start:], keys, meter)
        except SecurityError as exc:
            if strict:
                raise
            return Telegram(c, a, ci, header=header, encrypted=True,
                                       payload=data[start:],
                                       diagnostics=(Diagnostic(start, str(exc)),))
        records = _records(plain, 0, strict, diags, from_master)
        return Telegram(c, a, ci, header=header, records=tuple(records), encrypted=True,
                                   decrypted=True, payload=data[start:],
                                   diagnostics=tuple(diags))
    records = (_records_msb if msb else _records)(data, start, strict, diags, from_master)
    # decode_records reads to the end of the payload unless it stopped with a diagnostic
    used = len(data) if not diags else start + sum(len(r.raw) for r in records)
    tail = data[used:]
    if tail and not diags:
        diags.append(Diagnostic(used, "bytes after the last record"))
    return Telegram(c, a, ci, header=header, records=tuple(records), payload=tail,
                               diagnostics=tuple(diags))


def encode_telegram(telegram: Telegram) -> LongFrame:
    """The long frame for a telegram; exact for every telegram ``decode_telegram`` returned."""
    t = telegram
    ci = t.ci
    if baud_of_ci(ci) is not None:
        return LongFrame(t.control, t.address, ci, b"")
    data: bytes
    if ci == CI.APPLICATION_RESET:
        data = b"" if t.subcode is None else bytes((t.subcode,))
    elif ci in (CI.SELECTION, CI.DESELECTION) and t.selection is not None:
        data = t.selection.encode()
    elif ci == CI.APPLICATION_ERROR:
        data = (b"" if t.error_code is None else bytes((t.error_code,))) + t.payload
    elif ci == CI.ALARM:
        data = (b"" if t.alarm is None else bytes((t.alarm,))) + t.payload
    else:
        msb = ci in MSB_CIS
        head = b"" if t.header is None else t.header.encode(msb_first=msb)
        if t.encrypted:
            data = head + t.payload
        elif isinstance(t.header, FixedHeader):
            data = head + b"".join(r.raw for r in t.records) + t.payload
        else:
            data = head + _rec.encode_records(list(t.records)) + t.payload
    return LongFrame(t.control, t.address, ci, data)


def encrypt_telegram(telegram: Telegram, key: bytes) -> Telegram:
    """Encrypt the records of a long-header telegram in security mode 5.

    The IV comes from the telegram's own long header, in both directions: a meter's RSP_UD
    (CI 72h) and a master's command (CI 5Bh) alike use the long header they carry, which in a
    command names the addressed meter (EN 13757-7 7.2.4.5; our choice for wired SND_UD).
    """
    h = telegram.header
    if not isinstance(h, LongHeader):
        raise EncodeError("mode 5 encryption needs a long header (CI 72h or 5Bh)")
    plain = security.pad(_rec.encode_records(list(telegram.records)))
    sig = security.with_blocks((h.signature & ~0x1F00) | (security.MODE_AES_CBC_IV << 8),
                               len(plain) // security.BLOCK)
    h2 = dataclasses.replace(h, signature=sig)
    assert h2.id_raw is not None and h2.manufacturer_code is not None
    iv = security.mode5_iv(h2.manufacturer_code.to_bytes(2, "little"), h2.id_raw, h2.version,
                           h2.medium, h2.access_number)
    cipher = security.encrypt_cbc(key, iv, plain, meter=str(h2.address))
    return dataclasses.replace(telegram, header=h2, encrypted=True, decrypted=True,
                               payload=cipher)


__all__ = [
    "Diagnostic",
    "Telegram",
    "decode_telegram",
    "encode_telegram",
    "encrypt_telegram",
]
