"""A fake bus reader for head-end tests: telegrams shaped like a Kamstrup 382 answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mbuskit.codec.records import DataRecord, FunctionField, RecordKind
from mbuskit.errors import BusTimeout
from mbuskit.headend.config import MeterConfig


@dataclass(frozen=True)
class FakeAddress:
    id: int
    manufacturer: str = "KAM"
    version: int = 1
    medium: int = 2


@dataclass(frozen=True)
class FakeHeader:
    address: FakeAddress


@dataclass(frozen=True)
class FakeTelegram:
    address: int
    header: FakeHeader
    records: tuple[DataRecord, ...]


def rec(quantity: str, unit: str, value: Any, *, tariff: int = 0, storage: int = 0,
        function: FunctionField = FunctionField.INSTANTANEOUS,
        qualifiers: tuple[str, ...] = (), kind: RecordKind = RecordKind.DATA) -> DataRecord:
    return DataRecord(raw=b"", kind=kind, dif=0x04, quantity=quantity, unit=unit, value=value,
                      tariff=tariff, storage=storage, function=function, qualifiers=qualifiers)


def kamstrup_telegram(primary: int, ident: int, energy_wh: float, power_w: float,
                      when: datetime | None = None) -> FakeTelegram:
    records = [
        rec("energy", "Wh", energy_wh),
        rec("power", "W", power_w),
        rec("power", "W", power_w * 1.5, function=FunctionField.MAXIMUM),
        rec("energy", "Wh", energy_wh * 0.6, tariff=1),
        rec("power", "W", power_w / 3, qualifiers=("phase:L1",)),
        rec("fabrication_number", "", 55000000 + ident % 1000),
        rec("", "", b"\x00\x10", kind=RecordKind.MANUFACTURER),
    ]
    if when is not None:
        records.insert(0, rec("date_time", "", when))
    return FakeTelegram(primary, FakeHeader(FakeAddress(ident)), tuple(records))


@dataclass
class FakeReader:
    """Answers for the meters it knows; ``silent`` meters time out; counts transactions."""

    meters: dict[str, int] = field(default_factory=dict)  # name -> identification number
    silent: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)  # raise a non-M-Bus error (a bug)
    hang: set[str] = field(default_factory=set)  # never answer (a hung transport)
    delay: float = 0.0
    reads: list[str] = field(default_factory=list)
    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    energy: float = 1000.0

    async def read(self, meter: MeterConfig) -> Sequence[FakeTelegram]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            self.reads.append(meter.name)
            if meter.name in self.broken:
                raise ValueError("decoder bug")
            if meter.name in self.hang:
                await asyncio.Event().wait()
            if meter.name in self.silent or meter.name not in self.meters:
                raise BusTimeout(f"no answer from {meter.name}")
            self.energy += 10.0
            return [kamstrup_telegram(meter.primary or 0, self.meters[meter.name], self.energy,
                                      230.0)]
        finally:
            self.active -= 1

    async def command(self, meter: MeterConfig, name: str, args: Mapping[str, Any]) -> Any:
        self.commands.append((meter.name, name, dict(args)))
        return {"ok": True}
