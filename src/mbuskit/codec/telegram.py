"""EN 13757-3 application layer: CI codes, headers, secondary addresses, the Telegram.

``decode_telegram`` turns a long frame into a :class:`Telegram`; ``encode_telegram`` gives back
the exact frame: header fields keep their wire bytes (IDs with non-BCD digits exist in the
field), records keep theirs, and encrypted payloads are re-sent as the ciphertext received.
Selection payloads (CI 52h, EN 13757-3 clause 11) live here too: they are the same eight
address bytes as the long header.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from ..errors import DecodeError, EncodeError, SecurityError
from . import records as _rec
from . import security
from .link import LongFrame, decode_frame
from .records import DataRecord, FunctionField, RecordKind
from .timing import baud_of_ci


class CI(enum.IntEnum):
    """CI field values (EN 13757-3:2018 table 2, older user-group table for mode 2 codes)."""

    APPLICATION_RESET = 0x50
    DATA_SEND = 0x51
    SELECTION = 0x52
    DATA_SEND_MSB = 0x55  # mode 2, not recommended
    DESELECTION = 0x56  # old "selection mode 2", used by masters (jMBus) to deselect
    COMMAND_SHORT = 0x5A
    COMMAND_LONG = 0x5B
    APPLICATION_ERROR = 0x70
    ALARM = 0x71
    RESPONSE_LONG = 0x72
    RESPONSE_FIXED = 0x73
    RESPONSE_LONG_MSB = 0x76
    RESPONSE_FIXED_MSB = 0x77
    RESPONSE_NONE = 0x78
    RESPONSE_SHORT = 0x7A
    KAMSTRUP_TO_SLAVE = 0xA0  # manufacturer specific A0h-B7h
    KAMSTRUP_TO_MASTER = 0xA1
    BAUD_300 = 0xB8
    BAUD_600 = 0xB9
    BAUD_1200 = 0xBA
    BAUD_2400 = 0xBB
    BAUD_4800 = 0xBC
    BAUD_9600 = 0xBD
    BAUD_19200 = 0xBE
    BAUD_38400 = 0xBF


_LONG_CIS = frozenset({CI.RESPONSE_LONG, CI.RESPONSE_LONG_MSB, CI.COMMAND_LONG})
_SHORT_CIS = frozenset({CI.RESPONSE_SHORT, CI.COMMAND_SHORT})
_RECORD_CIS = frozenset({CI.RESPONSE_NONE, CI.DATA_SEND, CI.DATA_SEND_MSB})
_MSB_CIS = frozenset({CI.RESPONSE_LONG_MSB, CI.RESPONSE_FIXED_MSB, CI.DATA_SEND_MSB})


def is_manufacturer_ci(ci: int) -> bool:
    return 0xA0 <= ci <= 0xB7


# CI 70h error codes (EN 13757-3 clause 6.x, libmbus mbus_data_error_lookup wording)
APPLICATION_ERRORS: dict[int, str] = {
    0x00: "Unspecified error",
    0x01: "Unimplemented CI-Field",
    0x02: "Buffer too long, truncated",
    0x03: "Too many records",
    0x04: "Premature end of record",
    0x05: "More than 10 DIFE´s",
    0x06: "More than 10 VIFE´s",
    0x07: "Reserved",
    0x08: "Application busy",
    0x09: "Too many readouts",
}

# Application reset subcode, upper nibble = telegram type (EN 13757-3 table, CI 50h)
RESET_TYPES: dict[int, str] = {
    0x0: "all", 0x1: "user data", 0x2: "simple billing", 0x3: "enhanced billing",
    0x4: "multi-tariff billing", 0x5: "instantaneous values", 0x6: "load management values",
    0x7: "reserved", 0x8: "installation and startup", 0x9: "testing", 0xA: "calibration",
    0xB: "manufacturing", 0xC: "development", 0xD: "self-test", 0xE: "reserved",
    0xF: "reserved",
}


def reset_subcode_name(subcode: int) -> str:
    return f"{RESET_TYPES[(subcode >> 4) & 0xF]}, sub-telegram {subcode & 0xF}"


# Device type / medium byte (EN 13757-3:2018 table 12, mirrored by OMS vol. 2)
MEDIA: dict[int, str] = {
    0x00: "Other", 0x01: "Oil", 0x02: "Electricity", 0x03: "Gas", 0x04: "Heat (outlet)",
    0x05: "Steam", 0x06: "Warm water (30-90 °C)", 0x07: "Water", 0x08: "Heat cost allocator",
    0x09: "Compressed air", 0x0A: "Cooling load meter (outlet)",
    0x0B: "Cooling load meter (inlet)", 0x0C: "Heat (inlet)", 0x0D: "Heat / cooling load meter",
    0x0E: "Bus / system component", 0x0F: "Unknown medium", 0x10: "Irrigation water",
    0x11: "Water data logger", 0x12: "Gas data logger", 0x13: "Gas converter",
    0x14: "Calorific value", 0x15: "Hot water (>= 90 °C)", 0x16: "Cold water",
    0x17: "Dual register (hot/cold) water meter", 0x18: "Pressure", 0x19: "A/D converter",
    0x1A: "Smoke detector", 0x1B: "Room sensor", 0x1C: "Gas detector",
    0x20: "Breaker (electricity)", 0x21: "Valve (gas or water)", 0x25: "Customer unit",
    0x28: "Waste water", 0x29: "Garbage", 0x2A: "Carbon dioxide",
    0x31: "Communication controller", 0x32: "Unidirectional repeater",
    0x33: "Bidirectional repeater", 0x36: "Radio converter (system side)",
    0x37: "Radio converter (meter side)", 0xFF: "Wildcard",
}


def medium_name(medium: int) -> str:
    return MEDIA.get(medium, "Reserved")


# Fixed data structure (CI 73h/77h): medium is 4 bits spread over the two unit bytes
FIXED_MEDIA: dict[int, str] = {
    0x0: "Other", 0x1: "Oil", 0x2: "Electricity", 0x3: "Gas", 0x4: "Heat", 0x5: "Steam",
    0x6: "Hot Water", 0x7: "Water", 0x8: "H.C.A.", 0x9: "Reserved", 0xA: "Gas Mode 2",
    0xB: "Heat Mode 2", 0xC: "Hot Water Mode 2", 0xD: "Water Mode 2", 0xE: "H.C.A. Mode 2",
    0xF: "Reserved",
}

# Fixed-structure unit codes -> (quantity, SI unit, decimal exponent) (m-bus.com table 8.4.2)
_FIXED_UNITS: dict[int, tuple[str, str, int]] = {
    0x00: ("time", "", 0), 0x01: ("date", "", 0),
    **{0x02 + i: ("energy", "Wh", i) for i in range(9)},  # Wh .. 100 MWh
    **{0x0B + i: ("energy", "J", 3 + i) for i in range(9)},  # kJ .. 100 GJ
    **{0x14 + i: ("power", "W", i) for i in range(9)},  # W .. 100 MW
    **{0x1D + i: ("power", "J/h", 3 + i) for i in range(9)},  # kJ/h .. 100 GJ/h
    **{0x26 + i: ("volume", "m^3", i - 6) for i in range(9)},  # ml .. 100 m^3
    **{0x2F + i: ("volume_flow", "m^3/h", i - 6) for i in range(9)},  # ml/h .. 100 m^3/h
    0x38: ("temperature", "°C", -3), 0x39: ("hca_units", "", 0),
    0x3F: ("dimensionless", "", 0),
}
FIXED_UNIT_SAME_HISTORIC = 0x3E  # counter 2: same unit as counter 1, a stored (historic) value


# ---------------------------------------------------------------------------------------------
# identification fields

def manufacturer_code(letters: str) -> int:
    """'KAM' -> 0x2C2D: three letters, 5 bits each, 'A' = 1 (EN 13757-3 clause 6.3.3)."""
    if len(letters) != 3 or not all("A" <= c <= "Z" for c in letters.upper()):
        raise EncodeError(f"manufacturer must be 3 letters A-Z, got {letters!r}")
    up = letters.upper()
    return ((ord(up[0]) - 64) << 10) | ((ord(up[1]) - 64) << 5) | (ord(up[2]) - 64)


def manufacturer_letters(code: int) -> str:
    return (chr(((code >> 10) & 0x1F) + 64) + chr(((code >> 5) & 0x1F) + 64)
            + chr((code & 0x1F) + 64))


def _bcd_id(raw: bytes) -> int:
    # Like libmbus, a non-decimal nibble counts with its hex value at its decimal place; the
    # exact digits stay in the raw bytes (ID_text) so nothing is lost.
    value = 0
    for byte in reversed(raw):
        value = value * 100 + (byte >> 4) * 10 + (byte & 0x0F)
    return value


def _id_bytes(ident: int) -> bytes:
    if not 0 <= ident <= 99_999_999:
        raise EncodeError(f"ID {ident} is not 8 BCD digits")
    return bytes.fromhex(f"{ident:08d}")[::-1]


def _init_ident(obj: object, ident: int, raw: bytes | None, letters: str,
                code: int | None) -> None:
    if raw is None:
        raw = _id_bytes(ident)
    elif len(raw) != 4:
        raise EncodeError(f"ID must be 4 bytes, got {len(raw)}")
    elif _bcd_id(raw) != ident:
        raise EncodeError(f"ID {ident} does not match its bytes {raw.hex()}")
    object.__setattr__(obj, "id_raw", bytes(raw))
    if code is None:
        code = manufacturer_code(letters)
        object.__setattr__(obj, "manufacturer", letters.upper())
    elif not 0 <= code <= 0xFFFF:
        raise EncodeError(f"manufacturer code {code:#x} is not 16 bits")
    elif manufacturer_letters(code) != letters:
        raise EncodeError(f"manufacturer {letters!r} does not match code {code:#06x}")
    object.__setattr__(obj, "manufacturer_code", code)


@dataclass(frozen=True, slots=True)
class SecondaryAddress:
    """ID + manufacturer + version + medium; ``str()`` is libmbus's 'IIIIIIIIMMMMVVDD'."""

    id: int
    manufacturer: str
    version: int
    medium: int
    id_raw: bytes | None = None
    manufacturer_code: int | None = None

    def __post_init__(self) -> None:
        _init_ident(self, self.id, self.id_raw, self.manufacturer, self.manufacturer_code)
        for name in ("version", "medium"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise EncodeError(f"{name} must be a byte")

    @property
    def id_text(self) -> str:
        """The 8 ID digits as sent (hex digits where a meter sent non-BCD nibbles)."""
        assert self.id_raw is not None
        return self.id_raw[::-1].hex().upper()

    def to_bytes(self) -> bytes:
        """The 8 address bytes as in a long header or a selection (wire order)."""
        assert self.id_raw is not None and self.manufacturer_code is not None
        return (self.id_raw + self.manufacturer_code.to_bytes(2, "little")
                + bytes((self.version, self.medium)))

    def __str__(self) -> str:
        return self.to_bytes()[:4][::-1].hex().upper() + self.to_bytes()[4:].hex().upper()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecondaryAddress:
        if len(data) != 8:
            raise DecodeError(f"secondary address is 8 bytes, got {len(data)}")
        raw, code = bytes(data[:4]), int.from_bytes(data[4:6], "little")
        return cls(_bcd_id(raw), manufacturer_letters(code), data[6], data[7], raw, code)

    @classmethod
    def parse(cls, text: str) -> SecondaryAddress:
        """Parse 'IIIIIIIIMMMMVVDD' (manufacturer bytes in wire order, e.g. 2D2C for KAM)."""
        t = text.strip()
        if len(t) != 16 or not all(c in "0123456789abcdefABCDEF" for c in t):
            raise DecodeError(f"secondary address {text!r} is not 16 hex digits")
        return cls.from_bytes(bytes.fromhex(t[:8])[::-1] + bytes.fromhex(t[8:]))


# status byte bits (EN 13757-3:2018 clause 6.4, table 9)
STATUS_APPLICATION_MASK = 0x03  # 00 no error, 01 busy, 10 application error, 11 alarm
STATUS_POWER_LOW = 0x04
STATUS_PERMANENT_ERROR = 0x08
STATUS_TEMPORARY_ERROR = 0x10
STATUS_APPLICATION = {0: "no error", 1: "application busy", 2: "application error",
                      3: "abnormal condition / alarm"}


def status_flags(status: int) -> tuple[str, ...]:
    out = [] if not status & 3 else [STATUS_APPLICATION[status & 3]]
    for bit, name in ((STATUS_POWER_LOW, "power low"), (STATUS_PERMANENT_ERROR, "permanent error"),
                      (STATUS_TEMPORARY_ERROR, "temporary error")):
        if status & bit:
            out.append(name)
    if status & 0xE0:
        out.append(f"manufacturer bits {status >> 5:03b}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ShortHeader:
    """CI 7Ah/5Ah: access number, status, configuration word (+ extension in mode 7)."""

    access_number: int = 0
    status: int = 0
    signature: int = 0  # the configuration word (EN 13757-7 clause 7.5.8)
    config_ext: int | None = None  # configuration field extension, security mode 7 only

    @property
    def security_mode(self) -> int:
        return security.security_mode(self.signature)

    @property
    def encrypted_blocks(self) -> int:
        return security.encrypted_blocks(self.signature)

    def _tail(self, msb: bool) -> bytes:
        sig = self.signature.to_bytes(2, "big" if msb else "little")
        ext = b"" if self.config_ext is None else bytes((self.config_ext,))
        return bytes((self.access_number, self.status)) + sig + ext

    def encode(self, *, msb_first: bool = False) -> bytes:
        return self._tail(msb_first)


@dataclass(frozen=True, slots=True)
class LongHeader:
    """CI 72h/76h/5Bh: ID, manufacturer, version, medium, access number, status, config word."""

    id: int
    manufacturer: str
    version: int
    medium: int
    access_number: int = 0
    status: int = 0
    signature: int = 0
    config_ext: int | None = None
    id_raw: bytes | None = None
    manufacturer_code: int | None = None

    def __post_init__(self) -> None:
        _init_ident(self, self.id, self.id_raw, self.manufacturer, self.manufacturer_code)
        for name in ("version", "medium", "access_number", "status"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise EncodeError(f"{name} must be a byte")
        if not 0 <= self.signature <= 0xFFFF:
            raise EncodeError("signature must be 16 bits")

    @property
    def address(self) -> SecondaryAddress:
        return SecondaryAddress(self.id, self.manufacturer, self.version, self.medium,
                                self.id_raw, self.manufacturer_code)

    @property
    def id_text(self) -> str:
        return self.address.id_text

    @property
    def medium_name(self) -> str:
        return medium_name(self.medium)

    @property
    def security_mode(self) -> int:
        return security.security_mode(self.signature)

    @property
    def encrypted_blocks(self) -> int:
        return security.encrypted_blocks(self.signature)

    def encode(self, *, msb_first: bool = False) -> bytes:
        assert self.id_raw is not None and self.manufacturer_code is not None
        order: Literal["big", "little"] = "big" if msb_first else "little"
        ident = self.id_raw[::-1] if msb_first else self.id_raw
        short = ShortHeader(self.access_number, self.status, self.signature, self.config_ext)
        return (ident + self.manufacturer_code.to_bytes(2, order)
                + bytes((self.version, self.medium)) + short.encode(msb_first=msb_first))


@dataclass(frozen=True, slots=True)
class FixedHeader:
    """CI 73h/77h fixed data structure: ID, access number, status, the two unit bytes."""

    id: int
    access_number: int
    status: int
    unit1: int  # counter 1 type byte: bits 7-6 are medium bits 1-0
    unit2: int  # counter 2 type byte: bits 7-6 are medium bits 3-2
    id_raw: bytes | None = None

    def __post_init__(self) -> None:
        raw = _id_bytes(self.id) if self.id_raw is None else self.id_raw
        if len(raw) != 4 or _bcd_id(raw) != self.id:
            raise EncodeError(f"ID {self.id} does not match its bytes {raw.hex()}")
        object.__setattr__(self, "id_raw", bytes(raw))

    @property
    def medium(self) -> int:
        return ((self.unit1 & 0xC0) >> 6) | ((self.unit2 & 0xC0) >> 4)

    @property
    def medium_name(self) -> str:
        return FIXED_MEDIA[self.medium]

    @property
    def binary_counters(self) -> bool:
        return bool(self.status & 0x80)  # status bit 7: counters binary, else BCD

    @property
    def stored(self) -> bool:
        return bool(self.status & 0x40)  # status bit 6: counters are stored (fixed date) values

    def encode(self, *, msb_first: bool = False) -> bytes:
        assert self.id_raw is not None
        ident = self.id_raw[::-1] if msb_first else self.id_raw
        return ident + bytes((self.access_number, self.status, self.unit1, self.unit2))


Header = LongHeader | ShortHeader | FixedHeader


# ---------------------------------------------------------------------------------------------
# selection (CI 52h), EN 13757-3 clause 11 network layer

_ENHANCED_DIF_VIF = b"\x0c\x78"  # BCD8 fabrication number (enhanced secondary addressing)


def _nibble_match(pattern: str, actual: str) -> bool:
    return len(pattern) == len(actual) and all(p in ("F", a) for p, a in zip(pattern, actual,
                                                                              strict=True))


@dataclass(frozen=True, slots=True)
class Selection:
    """A selection mask: 'F' nibbles in the ID (and fabrication no.), FF bytes elsewhere."""

    id_mask: str  # 8 digits, most significant first, 'F' = wildcard
    manufacturer: bytes  # 2 bytes wire order, FF = wildcard per byte
    version: int
    medium: int
    fabrication: str | None = None  # 8 digits, 'F' = wildcard

    def __post_init__(self) -> None:
        for name, text in (("ID", self.id_mask), ("fabrication number", self.fabrication)):
            if text is not None and (len(text) != 8
                                     or not all(c in "0123456789ABCDEF" for c in text)):
                raise EncodeError(f"{name} mask must be 8 hex digits, got {text!r}")
        if len(self.manufacturer) != 2:
            raise EncodeError("manufacturer mask must be 2 bytes")

    @property
    def mask(self) -> str:
        tail = f"{self.version:02X}{self.medium:02X}"
        return self.id_mask + self.manufacturer.hex().upper() + tail

    def encode(self) -> bytes:
        data = (bytes.fromhex(self.id_mask)[::-1] + self.manufacturer
                + bytes((self.version, self.medium)))
        if self.fabrication is not None:
            data += _ENHANCED_DIF_VIF + bytes.fromhex(self.fabrication)[::-1]
        return data

    def matches(self, address: SecondaryAddress, fabrication: int | str | None = None) -> bool:
        if not _nibble_match(self.id_mask, address.id_text):
            return False
        wire = address.to_bytes()
        for i, want in enumerate(self.manufacturer):
            if want != 0xFF and want != wire[4 + i]:
                return False
        if self.version not in (0xFF, address.version) or self.medium not in (0xFF,
                                                                             address.medium):
            return False
        if self.fabrication is None:
            return True
        if fabrication is None:
            return False
        fab = f"{fabrication:08d}" if isinstance(fabrication, int) else fabrication.upper()
        return _nibble_match(self.fabrication, fab)


def encode_selection(mask: str | SecondaryAddress, fabrication: int | str | None = None) -> bytes:
    """Selection payload for CI 52h from a 16-character mask (or an address) and an optional
    fabrication number (enhanced selection appends ``0C 78`` + 8 BCD digits)."""
    text = str(mask).strip().upper()
    if len(text) != 16 or not all(c in "0123456789ABCDEF" for c in text):
        raise EncodeError(f"selection mask {mask!r} is not 16 hex digits")
    fab: str | None
    if fabrication is None:
        fab = None
    elif isinstance(fabrication, int):
        if not 0 <= fabrication <= 99_999_999:
            raise EncodeError(f"fabrication number {fabrication} is not 8 BCD digits")
        fab = f"{fabrication:08d}"
    else:
        fab = fabrication.strip().upper()
    return Selection(text[:8], bytes.fromhex(text[8:12]), int(text[12:14], 16),
                     int(text[14:16], 16), fab).encode()


def decode_selection(data: bytes) -> Selection:
    if len(data) not in (8, 14):
        raise DecodeError(f"selection payload is {len(data)} bytes, expected 8 or 14",
                          offset=len(data) if len(data) < 8 else 8)
    fab = None
    if len(data) == 14:
        if data[8:10] != _ENHANCED_DIF_VIF:
            raise DecodeError("enhanced selection record is not 0C 78 (fabrication no.)",
                              offset=8, expected="0C 78")
        fab = data[10:14][::-1].hex().upper()
    return Selection(data[:4][::-1].hex().upper(), bytes(data[4:6]), data[6], data[7], fab)


# ---------------------------------------------------------------------------------------------
# telegram

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
        quantity, unit, exp = _FIXED_UNITS.get(code, ("reserved", "", 0))
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


def _parse_long(data: bytes, msb: bool) -> LongHeader:
    if len(data) < 12:
        raise DecodeError(f"long header needs 12 bytes, got {len(data)}", offset=len(data),
                          expected="12-byte header")
    raw = bytes(data[:4][::-1] if msb else data[:4])
    code = int.from_bytes(data[4:6], "big" if msb else "little")
    sig = int.from_bytes(data[10:12], "big" if msb else "little")
    ext = None
    if security.security_mode(sig) == security.MODE_AES_CBC_NO_IV:
        if len(data) < 13:
            raise DecodeError("mode 7 header lacks its configuration extension", offset=12)
        ext = data[12]
    # Every field is derived from the bytes just read, so LongHeader.__post_init__'s checks
    # (ID against its bytes, letters against the code, byte ranges) cannot fail here; skipping
    # them saves about 4 us of the ~55 us a corpus telegram costs (bench/decode.py).
    header = object.__new__(LongHeader)
    put = object.__setattr__
    put(header, "id", _bcd_id(raw))
    put(header, "manufacturer", manufacturer_letters(code))
    put(header, "version", data[6])
    put(header, "medium", data[7])
    put(header, "access_number", data[8])
    put(header, "status", data[9])
    put(header, "signature", sig)
    put(header, "config_ext", ext)
    put(header, "id_raw", raw)
    put(header, "manufacturer_code", code)
    return header


def _parse_short(data: bytes) -> ShortHeader:
    if len(data) < 4:
        raise DecodeError(f"short header needs 4 bytes, got {len(data)}", offset=len(data))
    sig = int.from_bytes(data[2:4], "little")
    ext = None
    if security.security_mode(sig) == security.MODE_AES_CBC_NO_IV:
        if len(data) < 5:
            raise DecodeError("mode 7 header lacks its configuration extension", offset=4)
        ext = data[4]
    return ShortHeader(data[0], data[1], sig, ext)


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
        raw = data[:4][::-1] if msb else data[:4]
        fh = FixedHeader(_bcd_id(raw), data[4], data[5], data[6], data[7], raw)
        return Telegram(c, a, ci, header=fh, records=_fixed_records(fh, data[8:], msb))
    if is_manufacturer_ci(ci):
        return Telegram(c, a, ci, payload=data)

    header: Header | None
    if ci in _LONG_CIS:
        header = _parse_long(data, ci == CI.RESPONSE_LONG_MSB)
        start = 13 if header.config_ext is not None else 12
    elif ci in _SHORT_CIS:
        header = _parse_short(data)
        start = 5 if header.config_ext is not None else 4
    elif ci in _RECORD_CIS:
        header, start = None, 0
    else:
        if strict:
            raise DecodeError(f"unknown CI {ci:02X}", offset=0, expected="an EN 13757-3 CI")
        return Telegram(c, a, ci, payload=data,
                                   diagnostics=(Diagnostic(0, f"unknown CI {ci:02X}"),))
    msb = ci in _MSB_CIS
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
        msb = ci in _MSB_CIS
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
    "APPLICATION_ERRORS",
    "CI",
    "FIXED_MEDIA",
    "MEDIA",
    "RESET_TYPES",
    "Diagnostic",
    "FixedHeader",
    "Header",
    "LongHeader",
    "SecondaryAddress",
    "Selection",
    "ShortHeader",
    "Telegram",
    "decode_selection",
    "decode_telegram",
    "encode_selection",
    "encode_telegram",
    "encrypt_telegram",
    "is_manufacturer_ci",
    "manufacturer_code",
    "manufacturer_letters",
    "medium_name",
    "reset_subcode_name",
    "status_flags",
]
