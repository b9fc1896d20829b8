"""Read-backs of the ``mbus`` commands that change a meter.

An E5 says the meter took a SND_UD (EN 13757-2 5.7), not that the change is done, so every
command in ``control`` reads back what it changed and says "ok" only when the read-back shows
it: a register through a readout selection (EN 13757-3 6.3.4, the record's VIB with DIF data
field 8h) followed by an application reset that gives the meter its standard telegram back;
an address, meter number or baud rate by asking the meter where it should now answer.
``UnverifiedError`` (exit 11) is an E5 whose read-back differs, ``UnreachableError`` (exit 12)
an E5 after which the meter does not answer at its new place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ..errors import BusTimeout, MBusError, SecurityError
from ..master.driver import Master
from ..master.transaction import address_of, fabrication_of
from .session import UnverifiedError, _secondary

Target = tuple[int | str, str | None]  # a complete address and, for enhanced selection, a serial

# Records of docs/register-map.md that the commands change (DIF VIF [VIFE], without data).
BREAKER = bytes.fromhex("01FD1A")
DATE_TIME = bytes.fromhex("046D")
ACTIVE_TARIFF = bytes.fromhex("01FF07")
METER_STATUS = bytes.fromhex("01FD17")
DEBITING_PERIODS = bytes.fromhex("02FF0E")
CT_RATIO = bytes.fromhex("02FF05")
CT_LOCKED = bytes.fromhex("01FF06")
TARIFF_BY_COMMAND = 0x20  # meter status bit: the tariff is forced by command, not the input


def name(target: Target) -> str:
    address, fabrication = target
    return f"{address}" + (f" serial {fabrication}" if fabrication else "")


def _selection(header: bytes) -> bytes:
    # selection for readout: the same DIB/VIB with the DIF data field set to 8h
    return bytes(((header[0] & 0xF0) | 0x08,)) + header[1:]


async def registers(master: Master, target: Target,
                    headers: Sequence[bytes]) -> dict[bytes, Any]:
    """The values of the records ``headers`` (DIF VIF [VIFE]) as the meter sends them now; a
    record the meter does not have is left out."""
    address, fabrication = target
    where = address
    if _secondary(address):
        await master.select(address, fabrication=fabrication)
        where = 253
    await master.command(where, b"".join(_selection(h) for h in headers),
                         what="the read-back request")
    try:
        telegrams = await master.read(where, all_telegrams=False)
    except MBusError:
        with contextlib.suppress(MBusError):
            await master.application_reset(where)
        raise
    # the readout selection holds until an application reset (CI 50h, EN 13757-3 6.3.4):
    # give the meter its standard telegram back
    await master.application_reset(where)
    found: dict[bytes, Any] = {}
    for record in telegrams[0].records if telegrams else []:
        for header in headers:
            if record.raw[:len(header)] == header and header not in found:
                found[header] = record.value
    return found


async def before(master: Master, target: Target, headers: Sequence[bytes], *,
                 absent_ok: bool = False) -> dict[bytes, Any]:
    """``registers`` before a command, to tell whether its target state already holds: {} when
    the meter's answer is encrypted and we have no key (the plain command that follows is then
    refused, and that refusal is what to report), and with ``absent_ok`` when the meter refuses
    the selection of registers it does not have (EN 13757-3 6.6: it stays silent)."""
    try:
        return await registers(master, target, headers)
    except SecurityError:
        return {}
    except BusTimeout:
        if absent_ok:
            return {}
        raise


async def register(master: Master, target: Target, header: bytes, what: str) -> Any:
    value = (await registers(master, target, [header])).get(header)
    if value is None:
        raise UnverifiedError(f"meter {name(target)}: acknowledged {what}, but its read-back "
                              f"holds no {header.hex(' ').upper()} record: not verified")
    return value


async def identity(master: Master, target: Target) -> tuple[str, str | None, int]:
    """The meter's secondary address (16 hex digits), its fabrication number when the long
    header is followed by a plain ``0C 78`` record, and the primary address it answers with."""
    address, fabrication = target
    frames = await master.read_frames(address, fabrication=fabrication, all_telegrams=False)
    found = address_of(frames[0]) if frames else None
    if found is None:
        raise UnverifiedError(f"meter {name(target)}: its answer has no long header (CI 72h), "
                              "so what the command changes cannot be read back")
    return found, fabrication_of(frames[0]), frames[0].address


async def answered(master: Master, where: int | str,
                   fabrication: str | None) -> tuple[str, str | None, int] | None:
    """``identity`` of whoever answers at ``where`` now, None when nobody does."""
    try:
        return await identity(master, (where, fabrication))
    except BusTimeout:
        return None


def clock(value: Any, target: Target, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise UnverifiedError(f"meter {name(target)}: acknowledged {what}, but its clock "
                              f"record reads {value!r}: not verified")
    return value.replace(tzinfo=None)


def near(read: datetime, expected: datetime, slack: timedelta) -> bool:
    # a type F time has minute resolution (EN 13757-3 annex A): a minute either way
    return abs(read - expected) <= timedelta(minutes=1) + slack


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


__all__ = [
    "ACTIVE_TARIFF",
    "BREAKER",
    "CT_LOCKED",
    "CT_RATIO",
    "DATE_TIME",
    "DEBITING_PERIODS",
    "METER_STATUS",
    "TARIFF_BY_COMMAND",
    "Target",
    "answered",
    "before",
    "clock",
    "identity",
    "name",
    "near",
    "register",
    "registers",
    "stamp",
]
