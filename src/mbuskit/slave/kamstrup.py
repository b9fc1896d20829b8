"""Twin of the Kamstrup M-Bus module for electricity meters (data sheet 5810953).

:class:`KamstrupModule` is the ``slave.Device`` behind a ``slave.Slave``: identity KAM,
electricity (02h), configurable version; secondary address = meter number (changeable by
command), fabrication number = the meter's serial number (fixed). It answers REQ_UD2 with the
standard data telegram (CI 72h, long header) and, after a readout selection (SND_UD CI 51h with
"selection for readout" records, or the global readout DIF 7Fh), with the selected or with all
registers, split over telegrams ending in DIF 1Fh. An application reset (CI 50h, any subcode)
returns to the standard telegram. The register map and every command record are in
docs/register-map.md; the command encoders here build exactly those bytes.

With an AES-128 key the answers are encrypted (security mode 5, EN 13757-7 7.2.4.5; access
number +1 per telegram) and commands that change state must arrive encrypted with that key (CI
5Bh with a long header or 5Ah with a short one, mode 5). Plain or wrongly keyed commands are
refused and counted in the ``security_refusals`` register.

One command record per SND_UD: the meter can refuse a command in its present state (breaker
already connected, ratio locked), and with one record a refusal is guaranteed to change
nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..codec import values
from ..codec.header import SecondaryAddress
from ..codec.records import DataRecord, RecordKind
from ..codec.security import decrypt_cbc, encrypt_cbc, mode5_iv
from ..errors import DecodeError, EncodeError, SecurityError
from .kamstrup_codec import bcd_digits, command_records, decode_type_f, encode_type_f
from .kamstrup_registers import (
    ADDITIONAL,
    DATA_FIELD_SELECTION,
    DIF_GLOBAL_READOUT,
    REGISTER_BY_NAME,
    REGISTERS,
    STANDARD,
    Context,
    Register,
    encode_register,
    selection_matches,
)
from .machine import (
    ACCEPTED,
    APP_ERROR_PREMATURE_END,
    APP_ERROR_TOO_MANY_DIFE,
    APP_ERROR_TOO_MANY_RECORDS,
    APP_ERROR_TOO_MANY_VIFE,
    APP_ERROR_UNIMPLEMENTED_CI,
    APP_ERROR_UNSPECIFIED,
    CommandResult,
    Identity,
    Response,
    refused,
)
from .meter import CommandRefused, Meter

MANUFACTURER = "KAM"
MEDIUM_ELECTRICITY = 0x02
DEFAULT_VERSION = 0x01  # the 382 module 6850-005 sends 01h; 6850068's byte is not public

CI_RESPONSE_LONG = 0x72
CI_DATA_SEND = 0x51
CI_COMMAND_SHORT = 0x5A  # command with short transport header (EN 13757-7), used encrypted
CI_COMMAND_LONG = 0x5B  # command with long transport header
LONG_HEADER_LENGTH = 12
SHORT_HEADER_LENGTH = 4
MODE_5 = 5
MAX_DATA = 252  # link layer: data bytes after the CI
MORE_FOLLOWS = b"\x1f"
STATE_FORMAT = 1

# command record headers (docs/register-map.md, "Commands")
H_PRIMARY_ADDRESS = bytes.fromhex("017A")
H_METER_NUMBER = bytes.fromhex("0C79")
H_DATE_TIME = bytes.fromhex("046D")
H_CLOCK_ADD = bytes.fromhex("04ED01")  # VIF 6Dh + object action 01h "add value"
H_CLOCK_SUBTRACT = bytes.fromhex("04ED02")  # object action 02h "subtract value"
H_BREAKER = bytes.fromhex("01FD1F")  # FD 1Fh remote control (device specific)
H_TARIFF = bytes.fromhex("01FF07")
H_DEBITING_STOP = bytes.fromhex("40FE0B")  # storage 1, any VIF, object action 0Bh "freeze"
H_CT_RATIO = bytes.fromhex("02FF05")
H_CT_LOCK = bytes.fromhex("01FF06")
H_RESET_COUNTERS = bytes.fromhex("808040FE07")  # subunit 2, any VIF, object action 07h "clear"
H_TOP_UP = bytes.fromhex("84C0408401")  # subunit 3, energy 10 Wh, object action 01h "add"


class BreakerCommand(enum.IntEnum):
    """Values of the ``01 FD 1F vv`` record. Reconnecting takes two commands (ARM, CONNECT)
    or RELEASE plus the push button, as the 162M/382M breaker does (TD 5512-1040 6)."""

    DISCONNECT = 0
    ARM = 1
    CONNECT = 2
    RELEASE = 3


# -- command encoders (what a master sends in SND_UD CI 51h) ------------------------------------
# Each checks its range first, so the codec's encoders never meet a value beyond its field.

def cmd_set_primary_address(address: int) -> bytes:
    if not 0 <= address <= 250:
        raise EncodeError(f"primary address must be 0-250, got {address}")
    return H_PRIMARY_ADDRESS + bytes((address,))


def cmd_set_meter_number(number: int) -> bytes:
    if not 0 <= number <= 99_999_999:
        raise EncodeError(f"meter number must have 8 digits, got {number}")
    return H_METER_NUMBER + values.encode_bcd(number, 4)


def cmd_set_date_time(when: datetime) -> bytes:
    return H_DATE_TIME + encode_type_f(when)


def cmd_adjust_clock(seconds: int) -> bytes:
    if not -(2**31) < seconds < 2**31:
        raise EncodeError(f"clock offset {seconds} s does not fit 32 bits")
    head = H_CLOCK_ADD if seconds >= 0 else H_CLOCK_SUBTRACT
    return head + values.encode_int(abs(seconds), 4, signed=True)


def cmd_breaker(action: BreakerCommand) -> bytes:
    return H_BREAKER + bytes((int(action),))


def cmd_tariff(tariff: int | None) -> bytes:
    """Force tariff 1-4, or None to hand tariff control back to the 230 V input."""
    if tariff is not None and tariff not in (1, 2, 3, 4):
        raise EncodeError(f"tariff must be 1-4 or None, got {tariff}")
    return H_TARIFF + bytes((tariff or 0,))


def cmd_debiting_stop() -> bytes:
    return H_DEBITING_STOP


def cmd_set_ct_ratio(ratio: int) -> bytes:
    if not 1 <= ratio <= 9999:
        raise EncodeError(f"transformer ratio must be 1-9999, got {ratio}")
    return H_CT_RATIO + values.encode_int(ratio, 2, signed=True)


def cmd_lock_ct_ratio() -> bytes:
    return H_CT_LOCK + b"\x01"


def cmd_reset_counters() -> bytes:
    return H_RESET_COUNTERS


def cmd_prepayment_top_up(kwh: Decimal | int | str) -> bytes:
    """Top-up in kWh, sent in 10 Wh steps (0.01 kWh)."""
    try:
        amount = Decimal(str(kwh))
    except InvalidOperation as exc:
        raise EncodeError(f"top-up {kwh!r} is not a number") from exc
    steps = amount * 100
    if not amount.is_finite() or amount <= 0 or steps != steps.to_integral_value() or (
            steps >= 2**31):
        raise EncodeError(f"top-up must be a positive multiple of 0.01 kWh, got {kwh}")
    return H_TOP_UP + values.encode_int(int(steps), 4, signed=True)


def cmd_readout_selection(names: Iterable[str]) -> bytes:
    """Selection-for-readout records (DIF data field 8h) for the named registers."""
    out = bytearray()
    for name in names:
        register = REGISTER_BY_NAME.get(name)
        if register is None:
            raise EncodeError(f"no register {name!r} in the Kamstrup register map")
        out += bytes(((register.dif & 0xF0) | DATA_FIELD_SELECTION,)) + register.header[1:]
    if not out:
        raise EncodeError("a readout selection needs at least one register")
    return bytes(out)


CMD_GLOBAL_READOUT = bytes((DIF_GLOBAL_READOUT,))


def encrypt_command(payload: bytes, *, key: bytes, identity: Identity, access_number: int,
                    long_header: bool = True) -> tuple[int, bytes]:
    """Wrap command records for a keyed module: (CI, data) of the SND_UD, mode 5.

    The IV is built from the module's own address (the header's when long) and the master's
    access number, as for the module's answers (EN 13757-7 7.2.4.5).
    """
    if not 0 <= access_number <= 0xFF:
        raise EncodeError("access number must be a byte")
    address = identity.address_bytes()
    iv = mode5_iv(address[4:6], address[:4], identity.version, identity.medium, access_number)
    cipher = encrypt_cbc(key, iv, payload)
    config = (MODE_5 << 8) | ((len(cipher) // 16) << 4)
    tail = bytes((access_number, 0)) + config.to_bytes(2, "little")
    if long_header:
        return CI_COMMAND_LONG, address + tail + cipher
    return CI_COMMAND_SHORT, tail + cipher


def encrypt_command_to(secondary: str, access_seen: int, payload: bytes, *,
                       key: bytes) -> tuple[int, bytes]:
    """``encrypt_command`` for the meter whose fresh answer named ``secondary`` (16 hex digits)
    with access number ``access_seen``: its own address and the next access number make the
    IV (EN 13757-7 7.2.4.5)."""
    sa = SecondaryAddress.parse(secondary)
    identity = Identity(sa.id, sa.manufacturer, sa.version, sa.medium)
    return encrypt_command(payload, key=key, identity=identity,
                           access_number=(access_seen + 1) & 0xFF)


# -- the module -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Readout:
    name: str  # "standard", "all" or "selection"
    registers: tuple[Register, ...]


_STANDARD = _Readout("standard", STANDARD)
_ALL = _Readout("all", STANDARD + ADDITIONAL)
# records that choose the next read-out rather than command the meter
_SELECTING = (RecordKind.GLOBAL_READOUT, RecordKind.SELECTION)


class KamstrupModule:
    """The M-Bus module in a Kamstrup electricity meter (implements ``slave.Device``)."""

    def __init__(
        self,
        meter: Meter,
        *,
        version: int = DEFAULT_VERSION,
        meter_number: int | None = None,
        key: bytes | None = None,
        key_id: str | None = None,
        status: int = 0,
    ) -> None:
        if not 0 <= version <= 0xFF:
            raise EncodeError(f"version must be a byte, got {version}")
        if key is not None and len(key) != 16:
            raise SecurityError(f"AES-128 key must be 16 bytes, got {len(key)}")
        if not 0 <= status <= 0xFF:
            raise EncodeError("status must be a byte")
        self.meter = meter
        self._version = version
        self._meter_number = meter.config.meter_number if meter_number is None else meter_number
        self._identity = self._make_identity()  # validates the meter number
        self._key = key
        self.key_id = key_id
        self.status = status
        self.access_number = 0
        self.security_refusals = 0
        self._readout = _STANDARD

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    @property
    def readout(self) -> str:
        return self._readout.name

    @property
    def readout_registers(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._readout.registers)

    @property
    def meter_number(self) -> int:
        return self._meter_number

    @meter_number.setter
    def meter_number(self, number: int) -> None:
        old = self._meter_number
        self._meter_number = number
        try:
            self._identity = self._make_identity()
        except EncodeError:
            self._meter_number = old
            raise

    @property
    def version(self) -> int:
        return self._version

    def identity(self) -> Identity:
        return self._identity

    def _make_identity(self) -> Identity:
        return Identity(self._meter_number, MANUFACTURER, self._version, MEDIUM_ELECTRICITY,
                        fabrication=self.meter.config.serial_number)

    # -- read-out ------------------------------------------------------------------------------

    def telegrams(self, now: float) -> list[bytes]:
        """The record bytes of every telegram of the current read-out (without headers)."""
        self.meter.advance(now)
        ctx = Context(self.meter.snapshot(), self.security_refusals)
        records = [rec for r in self._readout.registers
                   if (rec := encode_register(r, ctx)) is not None]
        # 12 header bytes; encryption adds the 2F 2F check bytes inside the 240 cipher bytes
        budget = MAX_DATA - LONG_HEADER_LENGTH - (2 if self.encrypted else 0)
        return _split(records, budget)

    def respond(self, now: float, index: int) -> Response:
        parts = self.telegrams(now)
        index = min(index, len(parts) - 1)
        more = index < len(parts) - 1
        payload = parts[index] + (MORE_FOLLOWS if more else b"")
        self.access_number = (self.access_number + 1) & 0xFF
        address = self.identity().address_bytes()
        config = 0
        if self._key is not None:
            iv = mode5_iv(address[4:6], address[:4], self.version, MEDIUM_ELECTRICITY,
                          self.access_number)
            payload = encrypt_cbc(self._key, iv, payload)
            config = (MODE_5 << 8) | ((len(payload) // 16) << 4)
        header = address + bytes((self.access_number, self.status)) + config.to_bytes(2, "little")
        return Response(CI_RESPONSE_LONG, header + payload, more_follows=more)

    # -- commands ------------------------------------------------------------------------------

    def reset(self, subcode: int | None, now: float) -> CommandResult:
        # EN 13757-3 application reset: every subcode returns to the standard telegram; the
        # module has no other application to select (Kamstrup: "a reset selects the default")
        self._readout = _STANDARD
        return ACCEPTED

    def command(self, ci: int, data: bytes, now: float) -> CommandResult:
        if ci == CI_DATA_SEND:
            return self._records(data, now, authenticated=False)
        if ci in (CI_COMMAND_LONG, CI_COMMAND_SHORT):
            return self._transport(ci, data, now)
        return refused(f"CI {ci:02X} not implemented", APP_ERROR_UNIMPLEMENTED_CI)

    def _transport(self, ci: int, data: bytes, now: float) -> CommandResult:
        size = LONG_HEADER_LENGTH if ci == CI_COMMAND_LONG else SHORT_HEADER_LENGTH
        if len(data) < size:
            return refused("transport header truncated", APP_ERROR_PREMATURE_END)
        own = self.identity().address_bytes()
        if ci == CI_COMMAND_LONG and data[:8] != own:
            return refused("command header addresses another meter")
        access, config = data[size - 4], int.from_bytes(data[size - 2 : size], "little")
        body = data[size:]
        mode = (config >> 8) & 0x1F
        if mode == 0:
            return self._records(body, now, authenticated=False)
        if mode != MODE_5 or self._key is None:
            return self._security_refusal(f"security mode {mode} with "
                                          f"{'a' if self._key else 'no'} key")
        blocks = (config >> 4) & 0x0F
        if blocks * 16 != len(body):
            return self._security_refusal("encrypted length disagrees with the header")
        iv = mode5_iv(own[4:6], own[:4], self.version, MEDIUM_ELECTRICITY, access)
        try:
            plain = decrypt_cbc(self._key, iv, body)
        except SecurityError as exc:
            return self._security_refusal(str(exc))
        return self._records(plain[2:], now, authenticated=True)

    def _security_refusal(self, reason: str) -> CommandResult:
        self.security_refusals += 1
        return refused(reason)

    def _records(self, data: bytes, now: float, *, authenticated: bool) -> CommandResult:
        try:
            records = command_records(data)
        except DecodeError as exc:
            return refused(str(exc), _parse_error_code(exc))
        if not records:
            return refused("SND_UD without records")
        selections = [r for r in records if r.kind in _SELECTING]
        if selections:
            if len(selections) != len(records):
                return refused("readout selection mixed with commands")
            # choosing what the next telegram carries changes no meter state: allowed plain
            return self._select(records)
        if self._key is not None and not authenticated:
            return self._security_refusal("plain command to a module with a key")
        if len(records) > 1:
            return refused("one command record per SND_UD", APP_ERROR_TOO_MANY_RECORDS)
        try:
            return self._execute(records[0], now)
        except CommandRefused as exc:
            return refused(str(exc))
        except DecodeError as exc:
            return refused(str(exc))

    def _select(self, records: list[DataRecord]) -> CommandResult:
        if any(r.kind is RecordKind.GLOBAL_READOUT for r in records):
            self._readout = _ALL
            return ACCEPTED
        chosen: list[Register] = []
        for sel in records:
            found = [r for r in REGISTERS if selection_matches(sel, r)]
            if not found:
                return refused(f"no register matches selection {sel.header.hex().upper()}")
            chosen += [r for r in found if r not in chosen]
        self._readout = _Readout("selection", tuple(chosen))
        return ACCEPTED

    def _execute(self, rec: DataRecord, now: float) -> CommandResult:
        head, data, meter = rec.header, rec.data, self.meter
        if head == H_PRIMARY_ADDRESS:
            if data[0] > 250:
                return refused(f"primary address {data[0]} outside 0-250")
            return CommandResult(True, primary_address=data[0])
        if head == H_METER_NUMBER:
            self.meter_number = bcd_digits(rec)
        elif head == H_DATE_TIME:
            meter.set_clock(decode_type_f(data), now)
        elif head in (H_CLOCK_ADD, H_CLOCK_SUBTRACT):
            seconds = int.from_bytes(data, "little", signed=True)
            meter.adjust_clock(seconds if head == H_CLOCK_ADD else -seconds, now)
        elif head == H_BREAKER:
            self._breaker(data[0], now)
        elif head == H_TARIFF:
            if data[0] > 4:
                return refused(f"tariff {data[0]} outside 0-4")
            meter.set_tariff(data[0] or None, now)
        elif head == H_DEBITING_STOP:
            meter.debiting_stop(now)
        elif head == H_CT_RATIO:
            meter.set_ct_ratio(int.from_bytes(data, "little", signed=True), now)
        elif head == H_CT_LOCK:
            if data != b"\x01":
                return refused("the ratio lock takes the value 1 (it cannot be undone)")
            meter.lock_ct_ratio(now)
        elif head == H_RESET_COUNTERS:
            meter.reset_resettable_counters(now)
        elif head == H_TOP_UP:
            steps = int.from_bytes(data, "little", signed=True)
            meter.prepayment_top_up(Decimal(steps) / 100, now)
        else:
            return refused(f"no command {head.hex().upper()}")
        return ACCEPTED

    def _breaker(self, value: int, now: float) -> None:
        try:
            action = BreakerCommand(value)
        except ValueError as exc:
            raise CommandRefused("breaker", f"value {value} is none of 0-3") from exc
        if action is BreakerCommand.DISCONNECT:
            self.meter.breaker_disconnect(now)
        elif action is BreakerCommand.ARM:
            self.meter.breaker_arm(now)
        elif action is BreakerCommand.CONNECT:
            self.meter.breaker_connect(now)
        else:
            self.meter.breaker_release(now)

    # -- persistence ---------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The module's own configuration (the link part lives in ``Slave.to_state``). The key
        itself is never written, only its id in the caller's key store."""
        return {"format": STATE_FORMAT, "meter_number": self.meter_number,
                "version": self.version, "key_id": self.key_id,
                "security_refusals": self.security_refusals}

    @classmethod
    def from_state(cls, meter: Meter, state: Mapping[str, Any], *,
                   key: bytes | None = None) -> KamstrupModule:
        if state.get("format") != STATE_FORMAT:
            raise EncodeError(f"not a Kamstrup module state of format {STATE_FORMAT}")
        try:
            module = cls(meter, version=int(state["version"]),
                         meter_number=int(state["meter_number"]), key=key,
                         key_id=state.get("key_id"))
            module.security_refusals = int(state.get("security_refusals", 0))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EncodeError):
                raise
            raise EncodeError(f"bad Kamstrup module state: {exc!r}") from exc
        return module


def _split(records: list[bytes], budget: int) -> list[bytes]:
    """Greedy split into telegrams of at most ``budget`` record bytes; every telegram but the
    last keeps one byte for the DIF 1Fh "more records follow" (EN 13757-3 6.3.1)."""
    total = sum(len(r) for r in records)
    if total <= budget:
        return [b"".join(records)]
    parts: list[bytes] = []
    current = bytearray()
    for rec in records:
        if current and len(current) + len(rec) > budget - 1:
            parts.append(bytes(current))
            current = bytearray()
        current += rec
    parts.append(bytes(current))
    return parts


def _parse_error_code(exc: DecodeError) -> int:
    # the CI 70h code for a command that cannot be read (the reasons of decode_records and
    # kamstrup_codec.command_records); any other reason is unspecified
    text = exc.reason
    if text.startswith("more than 10 DIFEs"):
        return APP_ERROR_TOO_MANY_DIFE
    if text.startswith("more than 10 VIFEs"):
        return APP_ERROR_TOO_MANY_VIFE
    if text.startswith("premature end"):
        return APP_ERROR_PREMATURE_END
    return APP_ERROR_UNSPECIFIED


__all__ = [
    "CI_COMMAND_LONG",
    "CI_COMMAND_SHORT",
    "CI_DATA_SEND",
    "CMD_GLOBAL_READOUT",
    "DEFAULT_VERSION",
    "MANUFACTURER",
    "MEDIUM_ELECTRICITY",
    "BreakerCommand",
    "KamstrupModule",
    "cmd_adjust_clock",
    "cmd_breaker",
    "cmd_debiting_stop",
    "cmd_lock_ct_ratio",
    "cmd_prepayment_top_up",
    "cmd_readout_selection",
    "cmd_reset_counters",
    "cmd_set_ct_ratio",
    "cmd_set_date_time",
    "cmd_set_meter_number",
    "cmd_set_primary_address",
    "cmd_tariff",
    "encrypt_command",
    "encrypt_command_to",
]
