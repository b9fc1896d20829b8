"""What an emulator process serves: its configuration, from options or a TOML file.

The specs of meters and gateways (:class:`MeterSpec`, :class:`GatewaySpec`), the whole
:class:`EmulatorConfig` with its checks (distinct numbers, module baud rates), the TOML reader
(:func:`load_config`, :func:`parse_config`) and the MeterConfig a spec stands for. The process
that serves it, and the seeded populations (they draw from ``random``, which only the adapter
``slave/emulator.py`` may), are in :mod:`mbuskit.slave.emulator`.

The TOML file:

```toml
[emulator]            # all optional
host = "127.0.0.1"
baud = 2400           # default for the gateways
speed = 1.0           # meter clocks run this many times faster than wall time
realtime = false      # wait as the wire would (EN 13757-2 timing) before answering
collisions = "and"    # collided answers: "and" (wired AND) or "skew" (one after another)
state = "state/"      # keep the meters across restarts
save_interval = 60    # seconds between state saves

[[gateways]]
port = 10001          # a TCP gateway, or: serial = "pty" / "/dev/ttyUSB0"

[[gateways.meters]]
address = 1           # primary address, 0..250 (0 = factory default)
meter_number = 12345678   # secondary address (8 digits)
serial = 70000001     # fabrication number (8 digits, enhanced secondary address)
variant = "direct"    # or "ct"
key = "000102030405060708090A0B0C0D0E0F"   # AES-128 key: telegrams encrypted (mode 5)
profile = { base_load_w = 300, variable_load_w = 2000 }   # load profile
```
Errors in the file name the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..codec import timing
from ..errors import LocalError, MBusError
from ..transport.simbus import check_collisions

ADDRESS_MAX = 250  # EN 13757-2 primary addresses; 0 is the module's factory default
# The rates the Kamstrup module offers (data sheet 5810953: 300, 2400 and 9600 baud)
MODULE_BAUDS: tuple[int, ...] = (300, 2400, 9600)
MAX_METERS_PER_GATEWAY = 250


class EmulatorConfigError(LocalError):
    """The emulator was asked to serve something it cannot (bad option or config file).

    ``line`` is the line of the config file the problem is on, when known.
    """

    def __init__(self, message: str, *, source: str | None = None,
                 line: int | None = None) -> None:
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message)


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter to emulate; ``options`` are further ``MeterConfig`` fields."""

    address: int
    meter_number: int
    serial_number: int
    variant: str = "direct"
    key: bytes | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """One bus: served on a TCP port, or on a serial device / new pty."""

    meters: tuple[MeterSpec, ...]
    port: int | None = None
    serial: str | None = None
    baud: int = 2400

    @property
    def label(self) -> str:
        return f"tcp port {self.port}" if self.port is not None else f"serial {self.serial}"


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    gateways: tuple[GatewaySpec, ...]
    host: str = "127.0.0.1"
    speed: float = 1.0
    realtime: bool = False
    collisions: str = "and"  # how collided answers reach the master (simbus.COLLISION_MODES)
    state_dir: Path | None = None
    save_interval: float = 60.0
    start: float | None = None  # the meters' clock at start (None: wall time)

    def __post_init__(self) -> None:
        if not self.gateways:
            raise EmulatorConfigError("nothing to serve: no gateways")
        if not self.speed > 0:
            raise EmulatorConfigError(f"speed must be > 0, got {self.speed}")
        if not self.save_interval > 0:
            raise EmulatorConfigError(f"save interval must be > 0, got {self.save_interval}")
        try:
            check_collisions(self.collisions)
        except LocalError as exc:
            raise EmulatorConfigError(str(exc)) from None
        check_distinct(self.gateways)

    @property
    def meters(self) -> list[MeterSpec]:
        return [m for g in self.gateways for m in g.meters]


def check_distinct(gateways: Sequence[GatewaySpec], source: str | None = None,
                   lines: _Lines | None = None) -> None:
    """Meter and serial numbers are unique in the process; addresses unique per bus."""
    numbers: set[int] = set()
    serials: set[int] = set()
    ports: set[int] = set()
    for g_index, gateway in enumerate(gateways):
        if gateway.port:
            if gateway.port in ports:
                raise EmulatorConfigError(
                    f"TCP port {gateway.port} is served twice", source=source,
                    line=lines.find(g_index, None, "port") if lines else None)
            ports.add(gateway.port)
        addresses: set[int] = set()
        for m_index, meter in enumerate(gateway.meters):
            def line(key: str, gi: int = g_index, mi: int = m_index) -> int | None:
                return lines.find(gi, mi, key) if lines else None

            if meter.address in addresses and meter.address != 0:
                raise EmulatorConfigError(
                    f"primary address {meter.address} is used twice on {gateway.label}",
                    source=source, line=line("address"))
            addresses.add(meter.address)
            if meter.meter_number in numbers:
                raise EmulatorConfigError(
                    f"meter number {meter.meter_number:08d} is used twice", source=source,
                    line=line("meter_number"))
            numbers.add(meter.meter_number)
            if meter.serial_number in serials:
                raise EmulatorConfigError(
                    f"serial number {meter.serial_number:08d} is used twice", source=source,
                    line=line("serial"))
            serials.add(meter.serial_number)



def check_module_baud(baud: int) -> int:
    timing.check_baud(baud)
    if baud not in MODULE_BAUDS:
        raise EmulatorConfigError(
            f"the Kamstrup M-Bus module runs at {', '.join(map(str, MODULE_BAUDS))} baud, "
            f"not {baud}")
    return baud



# -- TOML config --------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\s]+?)\s*\]\]")
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\s]+?)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


class _Lines:
    """Where each gateway / meter table and key of the config file is (tomllib keeps no lines)."""

    def __init__(self, text: str) -> None:
        self._keys: dict[tuple[int | None, int | None, str], int] = {}
        self._tables: dict[tuple[int | None, int | None], int] = {}
        gateway: int | None = None
        meter: int | None = None
        section: tuple[int | None, int | None] | None = None
        g_count = -1
        m_count = -1
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw
            match = _HEADER.match(line)
            if match:
                name = re.sub(r"\s", "", match.group(1))
                if name == "gateways":
                    g_count += 1
                    m_count = -1
                    gateway, meter = g_count, None
                    section = (gateway, None)
                elif name == "gateways.meters":
                    m_count += 1
                    meter = m_count
                    section = (gateway, meter)
                else:
                    section = None
                if section is not None:
                    self._tables[section] = number
                continue
            match = _TABLE.match(line)
            if match:
                name = re.sub(r"\s", "", match.group(1))
                if name == "emulator":
                    section = (None, None)
                    self._tables[section] = number
                elif name.startswith("gateways.meters."):
                    section = (gateway, meter)  # a sub-table (profile) of the current meter
                else:
                    section = None
                continue
            match = _KEY.match(line)
            if match and section is not None:
                self._keys.setdefault((section[0], section[1], match.group(1)), number)

    def find(self, gateway: int | None, meter: int | None, key: str | None = None) -> int | None:
        if key is not None and (gateway, meter, key) in self._keys:
            return self._keys[(gateway, meter, key)]
        return self._tables.get((gateway, meter))


_EMULATOR_KEYS = {"host", "baud", "speed", "realtime", "state", "save_interval", "collisions"}
_GATEWAY_KEYS = {"port", "serial", "baud", "meters"}
_METER_KEYS = {"address", "meter_number", "serial", "variant", "key", "profile", "seed"}


def load_config(path: str | Path, **overrides: Any) -> EmulatorConfig:
    """Read a TOML emulator config; ``overrides`` (from the command line) win over the file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EmulatorConfigError(f"cannot read: {exc.strerror or exc}", source=source) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            found = re.search(r"line (\d+)", str(exc))
            line = int(found.group(1)) if found else None
        raise EmulatorConfigError(f"not valid TOML: {exc}", source=source, line=line) from exc
    return parse_config(data, source=source, lines=_Lines(text), **overrides)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>",
                 lines: _Lines | None = None, **overrides: Any) -> EmulatorConfig:
    def fail(message: str, gateway: int | None = None, meter: int | None = None,
             key: str | None = None) -> EmulatorConfigError:
        return EmulatorConfigError(message, source=source,
                                   line=lines.find(gateway, meter, key) if lines else None)

    unknown = set(data) - {"emulator", "gateways"}
    if unknown:
        raise fail(f"unknown top-level keys {sorted(unknown)} (expected [emulator], "
                   "[[gateways]])")
    head = data.get("emulator", {})
    if not isinstance(head, Mapping):
        raise fail("[emulator] must be a table")
    for key in set(head) - _EMULATOR_KEYS:
        raise fail(f"unknown key {key!r} in [emulator] (known: {sorted(_EMULATOR_KEYS)})",
                   None, None, key)
    default_baud = _int(head.get("baud", 2400), lambda m: fail(m, None, None, "baud"), "baud")
    try:
        check_module_baud(default_baud)
    except MBusError as exc:
        raise fail(str(exc), None, None, "baud") from exc
    raw_gateways = data.get("gateways")
    if not isinstance(raw_gateways, list) or not raw_gateways:
        raise fail("no [[gateways]]: nothing to serve")
    gateways = []
    for g, raw in enumerate(raw_gateways):
        gateways.append(_gateway(raw, g, default_baud, fail))
    options: dict[str, Any] = {
        "host": head.get("host", "127.0.0.1"),
        "speed": head.get("speed", 1.0),
        "realtime": head.get("realtime", False),
        "save_interval": head.get("save_interval", 60.0),
        "collisions": head.get("collisions", "and"),
    }
    if "state" in head:
        options["state_dir"] = Path(str(head["state"]))
    for key, kind in (("host", str), ("realtime", bool), ("collisions", str)):
        if not isinstance(options[key], kind):
            raise fail(f"{key} must be a {kind.__name__}", None, None, key)
    for key in ("speed", "save_interval"):
        if isinstance(options[key], bool) or not isinstance(options[key], int | float):
            raise fail(f"{key} must be a number", None, None, key)
        options[key] = float(options[key])
        if options[key] <= 0:
            raise fail(f"{key} must be > 0", None, None, key)
    options.update({k: v for k, v in overrides.items() if v is not None})
    check_distinct(gateways, source, lines)
    return EmulatorConfig(gateways=tuple(gateways), **options)


Fail = Callable[..., EmulatorConfigError]


def _int(value: Any, fail: Callable[[str], EmulatorConfigError], name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{name} must be an integer, got {value!r}")
    return value


def _gateway(raw: Any, g: int, default_baud: int, fail: Fail) -> GatewaySpec:
    if not isinstance(raw, Mapping):
        raise fail("a [[gateways]] entry must be a table", g)
    for key in set(raw) - _GATEWAY_KEYS:
        raise fail(f"unknown key {key!r} in gateway {g + 1} (known: {sorted(_GATEWAY_KEYS)})",
                   g, None, key)
    port = raw.get("port")
    serial = raw.get("serial")
    if (port is None) == (serial is None):
        raise fail(f"gateway {g + 1} needs exactly one of port = N or serial = \"DEVICE|pty\"", g)
    if port is not None:
        port = _int(port, lambda m: fail(m, g, None, "port"), "port")
        if not 0 <= port < 65536:  # 0: any free port (printed at start)
            raise fail(f"port {port} is not a TCP port", g, None, "port")
    if serial is not None and (not isinstance(serial, str) or not serial):
        raise fail("serial must be a device path or \"pty\"", g, None, "serial")
    baud = _int(raw.get("baud", default_baud), lambda m: fail(m, g, None, "baud"), "baud")
    try:
        check_module_baud(baud)
    except MBusError as exc:
        raise fail(str(exc), g, None, "baud") from exc
    raw_meters = raw.get("meters")
    if not isinstance(raw_meters, list) or not raw_meters:
        raise fail(f"gateway {g + 1} has no [[gateways.meters]]", g)
    if len(raw_meters) > MAX_METERS_PER_GATEWAY:
        raise fail(f"gateway {g + 1} has {len(raw_meters)} meters, at most "
                   f"{MAX_METERS_PER_GATEWAY}", g)
    meters = tuple(_meter(m, g, i, fail) for i, m in enumerate(raw_meters))
    return GatewaySpec(meters=meters, port=port, serial=serial, baud=baud)


def _meter(raw: Any, g: int, i: int, fail: Fail) -> MeterSpec:
    if not isinstance(raw, Mapping):
        raise fail("a [[gateways.meters]] entry must be a table", g, i)
    where = f"meter {i + 1} of gateway {g + 1}"
    for key in ("address", "meter_number", "serial"):
        if key not in raw:
            raise fail(f"{where} lacks {key}", g, i)
    values: dict[str, int] = {}
    for key in ("address", "meter_number", "serial", "seed"):
        if key in raw:
            def bad(message: str, k: str = key) -> EmulatorConfigError:
                return fail(message, g, i, k)

            values[key] = _int(raw[key], bad, key)
    if not 0 <= values["address"] <= ADDRESS_MAX:
        raise fail(f"{where}: address {values['address']} is not 0..{ADDRESS_MAX}",
                   g, i, "address")
    for key in ("meter_number", "serial"):
        if not 0 <= values[key] <= 99_999_999:
            raise fail(f"{where}: {key} must have at most 8 digits", g, i, key)
    variant = raw.get("variant", "direct")
    if variant not in ("direct", "ct"):
        raise fail(f"{where}: variant must be \"direct\" or \"ct\"", g, i, "variant")
    key_bytes: bytes | None = None
    if "key" in raw:
        text = raw["key"]
        try:
            key_bytes = bytes.fromhex(text) if isinstance(text, str) else None
        except ValueError:
            key_bytes = None
        if key_bytes is None or len(key_bytes) != 16:
            raise fail(f"{where}: key must be 32 hex digits (AES-128)", g, i, "key")
    profile = raw.get("profile", {})
    if not isinstance(profile, Mapping):
        raise fail(f"{where}: profile must be a table", g, i, "profile")
    if profile:
        from .meter_profile import LoadProfile

        try:
            LoadProfile.from_dict(dict(profile))
        except MBusError as exc:
            raise fail(f"{where}: profile: {exc}", g, i, "profile") from exc
    options = {k: v for k, v in raw.items() if k not in _METER_KEYS}
    spec = MeterSpec(address=values["address"], meter_number=values["meter_number"],
                     serial_number=values["serial"], variant=variant, key=key_bytes,
                     profile=dict(profile), seed=values.get("seed", values["serial"]),
                     options=options)
    try:
        meter_config(spec)
    except MBusError as exc:
        raise fail(f"{where}: {exc}", g, i) from exc
    return spec


# -- building the meters ----------------------------------------------------------------------

def meter_config(spec: MeterSpec) -> Any:
    """The ``MeterConfig`` of a spec (raises MBusError for fields the model refuses)."""
    from .meter import MeterConfig

    data: dict[str, Any] = dict(spec.options)
    data.update(serial_number=spec.serial_number, meter_number=spec.meter_number,
                variant=spec.variant, seed=spec.seed)
    if spec.profile:
        data["profile"] = dict(spec.profile)
    return MeterConfig.from_dict(data)


__all__ = [
    "ADDRESS_MAX",
    "MAX_METERS_PER_GATEWAY",
    "MODULE_BAUDS",
    "EmulatorConfig",
    "EmulatorConfigError",
    "GatewaySpec",
    "MeterSpec",
    "check_distinct",
    "check_module_baud",
    "load_config",
    "meter_config",
    "parse_config",
]
