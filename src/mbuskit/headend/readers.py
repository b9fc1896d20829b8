"""The head-end's ``Reader`` over the real master: one ``Master`` per bus.

A lost connection (a gateway restarted, a USB adapter unplugged) closes the transport; the
next poll opens it again, so the scheduler's back-off is the only retry policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..errors import TransportError
from ..master.driver import Master
from ..slave.kamstrup import BreakerCommand, cmd_breaker
from ..transport.base import Transport
from .config import BusConfig, MeterConfig
from .model import TelegramLike
from .scheduler import CommandError

# EN 13757-3 6.3.3: DIF 7Fh (global readout request) asks the slave for all its data in the
# following read-outs; the Kamstrup twin answers it with the standard and the additional
# records (docs/register-map.md).
GLOBAL_READOUT = bytes((0x7F,))


class MasterReader:
    def __init__(self, transport: Transport, *, timeout: float | None = None,
                 keys: Mapping[str, bytes] | None = None) -> None:
        self.transport = transport
        self.master = Master(transport, timeout=timeout)
        self.keys = dict(keys or {})  # [keys] of the config: reference -> AES-128 key
        self._open = False

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
        address, fabrication = self._address(meter)
        if fabrication is not None:
            await self.master.select(address, fabrication=fabrication)
            address = 253
        try:
            if name == "set_time":
                when = args["when"]
                if not isinstance(when, datetime):
                    raise CommandError("set_time needs a datetime")
                await self.master.set_time(address, when)
                return {"time": when.isoformat()}
            if name == "breaker":
                # Kamstrup 162M/382M: disconnect is one command; reconnecting by command
                # takes two, arm then connect (TD 5512-1040; docs/register-map.md)
                if args.get("state") == "open":
                    await self.master.command(address, cmd_breaker(BreakerCommand.DISCONNECT),
                                              what="breaker disconnect")
                    return {"breaker": "open"}
                if args.get("state") == "closed":
                    await self.master.command(address, cmd_breaker(BreakerCommand.ARM),
                                              what="breaker arm")
                    await self.master.command(address, cmd_breaker(BreakerCommand.CONNECT),
                                              what="breaker connect")
                    return {"breaker": "closed"}
                raise CommandError("breaker state must be open or closed")
        except (TransportError, OSError):
            await self._reset()
            raise
        raise CommandError(f"unknown command {name!r}")

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
