"""The head-end's ``Reader`` over the real master: one ``Master`` per bus.

A lost connection (a gateway restarted, a USB adapter unplugged) closes the transport; the
next poll opens it again, so the scheduler's back-off is the only retry policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..codec.link import LongFrame
from ..codec.telegram import decode_telegram
from ..errors import BusTimeout, MBusError, ProtocolError, SecurityError, TransportError
from ..master.driver import Master
from ..master.transaction import CI_DATA_SEND, address_of, set_time_payload
from ..slave.kamstrup import (
    BreakerCommand,
    cmd_breaker,
    cmd_readout_selection,
    encrypt_command_to,
)
from ..slave.kamstrup_registers import REGISTER_BY_NAME
from ..transport.base import Transport
from .config import BusConfig, MeterConfig
from .model import TelegramLike
from .scheduler import CommandError, MeterRefused

# The records of the breaker state and disconnect reason (docs/register-map.md), asked for by
# a readout selection where the read-out does not carry them
_BREAKER_HEADER = REGISTER_BY_NAME["breaker"].header
_REASON_HEADER = REGISTER_BY_NAME["breaker_reason"].header
_BREAKER_SELECTION = cmd_readout_selection(["breaker", "breaker_reason"])

# EN 13757-3 6.3.3: DIF 7Fh (global readout request) asks the slave for all its data in the
# following read-outs; the Kamstrup twin answers it with the standard and the additional
# records (docs/register-map.md).
GLOBAL_READOUT = bytes((0x7F,))


class MasterReader:
    def __init__(self, transport: Transport, *, timeout: float | None = None,
                 keys: Mapping[str, bytes] | None = None) -> None:
        self.transport = transport
        self.master = Master(transport, timeout=timeout, more_follows=self._more_follows)
        self.keys = dict(keys or {})  # [keys] of the config: reference -> AES-128 key
        self._open = False

    def _more_follows(self, frame: LongFrame) -> bool:
        # DIF 1Fh sits inside the cipher of an encrypted telegram: the master's own check
        # cannot see it, so look with the key of the meter being read (master.keys)
        try:
            telegram = decode_telegram(frame, keys=self.master.keys, strict=False)
        except MBusError:
            return False
        records = telegram.records
        return bool(records) and bool(records[-1].more_records_follow)

    async def _ensure_open(self) -> None:
        if not self._open:
            await self.transport.open()
            self._open = True

    async def _reset(self) -> None:
        self._open = False
        with contextlib.suppress(TransportError, OSError):
            await self.transport.close()

    @staticmethod
    def _address(meter: MeterConfig) -> tuple[int | str, str | None]:
        if meter.primary is not None:
            return meter.primary, None
        assert meter.secondary is not None
        return meter.secondary, meter.fabrication

    async def read(self, meter: MeterConfig) -> Sequence[TelegramLike]:
        await self._ensure_open()
        address, fabrication = self._address(meter)
        # one transaction at a time per bus, so the master can carry this meter's key now
        self.master.keys = self.keys.get(meter.key) if meter.key else None
        try:
            if meter.data == "additional":
                target: int | str = address
                if fabrication is not None:
                    await self.master.select(address, fabrication=fabrication)
                    target = 253  # the selected slave (EN 13757-3 network layer)
                result: Sequence[TelegramLike] = await self.master.request_data(target,
                                                                                GLOBAL_READOUT)
                return result
            telegrams: Sequence[TelegramLike] = await self.master.read(
                address, fabrication=fabrication)
            return telegrams
        except (TransportError, OSError):
            await self._reset()
            raise

    async def command(self, meter: MeterConfig, name: str, args: Mapping[str, Any]) -> Any:
        await self._ensure_open()
        target, fabrication = self._address(meter)
        try:
            if fabrication is not None:
                await self.master.select(target, fabrication=fabrication)
                target = 253
            if name == "set_time":
                when = args["when"]
                if not isinstance(when, datetime):
                    raise CommandError("set_time needs a datetime")
                # a meter whose clock runs local time gets its zone's wall time (with the
                # summer-time bit type F carries); the others UTC
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)  # the head-end's times are UTC
                zone = meter.zone
                wall = when.astimezone(zone if zone is not None else UTC)
                await self._send(meter, target, set_time_payload(wall), "setting the clock")
                # type F holds minutes: that is what the meter's clock now reads
                written = wall.replace(second=0, microsecond=0)
                return {"time": when.astimezone(UTC).isoformat(),
                        "timezone": meter.timezone or "UTC",
                        "meter_clock": written.isoformat()}
            if name == "breaker":
                # a breaker already where it is asked to be: said so, nothing sent (an arm of
                # a connected breaker would be refused by the module)
                wanted = {"open": 0, "closed": 1}.get(str(args.get("state")))
                now = None
                if wanted is not None:
                    with contextlib.suppress(SecurityError):  # a wrong key: refused below
                        now = await self.read_breaker(meter)
                if now is not None and now[0] == wanted:
                    return {"breaker": args["state"], "already": True}
                # Kamstrup 162M/382M: disconnect is one command; reconnecting by command
                # takes two, arm then connect (TD 5512-1040; docs/register-map.md)
                if args.get("state") == "open":
                    await self._send(meter, target, cmd_breaker(BreakerCommand.DISCONNECT),
                                     "breaker disconnect")
                    return {"breaker": "open"}
                if args.get("state") == "closed":
                    await self._send(meter, target, cmd_breaker(BreakerCommand.ARM),
                                     "breaker arm")
                    await self._send(meter, target, cmd_breaker(BreakerCommand.CONNECT),
                                     "breaker connect")
                    return {"breaker": "closed"}
                raise CommandError("breaker state must be open or closed")
        except (TransportError, OSError):
            await self._reset()
            raise
        raise CommandError(f"unknown command {name!r}")

    async def _send(self, meter: MeterConfig, address: int | str, payload: bytes,
                    what: str) -> None:
        """One SND_UD with command records: encrypted (mode 5) when the meter has a key, since
        a keyed module refuses plain commands (docs/register-map.md)."""
        key = self.keys.get(meter.key) if meter.key else None
        if isinstance(address, str):
            await self.master.select(address)
            address = 253  # the selected slave (EN 13757-3 network layer)
        ci, data = CI_DATA_SEND, payload
        if key is not None:
            ci, data = await self._encrypt(meter, address, key, payload)
        try:
            await self.master.command(address, data, ci=ci, what=what)
        except BusTimeout:
            await self._refusal(meter, address, what)
            raise

    async def _encrypt(self, meter: MeterConfig, address: int, key: bytes,
                       payload: bytes) -> tuple[int, bytes]:
        # The IV is made of the meter's own address and an access number (EN 13757-7
        # 7.2.4.5): both come from a fresh answer, which also proves the key before a command
        # goes out with it
        frames = await self.master.read_frames(address, all_telegrams=False)
        frame = frames[0] if frames else None
        secondary = address_of(frame) if frame is not None else None
        if frame is None or secondary is None or len(frame.data) < 12:
            raise ProtocolError(f"meter {meter.name}: no long header, cannot address an "
                                "encrypted command")
        config = int.from_bytes(frame.data[10:12], "little")
        if (config >> 8) & 0x1F:  # the answer is encrypted: it must open with our key
            try:
                decode_telegram(frame, keys=key)
            except SecurityError as exc:
                raise MeterRefused(f"meter {meter.name}: refused: key {meter.key!r} does not "
                                   f"match the meter ({exc}); command not sent") from None
        return encrypt_command_to(secondary, frame.data[8], payload, key=key)

    async def _refusal(self, meter: MeterConfig, address: int, what: str) -> None:
        code = await self.master.application_error(address)  # "refused", not "not there"
        if code is not None:
            raise MeterRefused(f"meter {meter.name}: refused {what} (application error "
                               f"{code:02X}){' (check its key)' if meter.key else ''}")

    async def read_breaker(self, meter: MeterConfig) -> tuple[int, int | None] | None:
        """The breaker state and disconnect reason codes as the module sends them now, for a
        meter whose standard read-out does not carry them: a readout selection of the two
        records (EN 13757-3 6.3.4), one read-out, then an application reset (CI 50h), since the
        selection holds until one and the meter must go back to its standard telegram. None
        when the answer lacks the state record."""
        await self._ensure_open()
        address, fabrication = self._address(meter)
        self.master.keys = self.keys.get(meter.key) if meter.key else None
        target: int | str = address
        try:
            if isinstance(address, str):
                await self.master.select(address, fabrication=fabrication)
                target = 253  # the selected slave (EN 13757-3 network layer)
            try:
                telegrams = await self.master.request_data(target, _BREAKER_SELECTION)
            finally:
                with contextlib.suppress(MBusError):
                    await self.master.application_reset(target)
        except (TransportError, OSError):
            await self._reset()
            raise
        state = reason = None
        for telegram in telegrams:
            for record in telegram.records:
                if record.raw.startswith(_BREAKER_HEADER) and isinstance(record.value, int):
                    state = record.value
                elif record.raw.startswith(_REASON_HEADER) and isinstance(record.value, int):
                    reason = record.value
        return None if state is None else (state, reason)

    async def close(self) -> None:
        await self._reset()


TransportFactory = Callable[[BusConfig], Transport]


def transport_for(bus: BusConfig) -> Transport:
    """The transport of a configured bus: a TCP gateway or a serial port."""
    if bus.kind == "tcp":
        from ..transport.tcp import TcpTransport

        host, _, port = bus.target.rpartition(":")
        return TcpTransport(host, int(port), baud=bus.baud)
    from ..transport.serial import SerialTransport

    return SerialTransport(bus.target, baud=bus.baud)


__all__ = ["GLOBAL_READOUT", "MasterReader", "transport_for"]
