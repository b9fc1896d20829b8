"""The head-end configuration file (TOML): buses, meters, polling, storage, MQTT, HTTP.

Every semantic error names the line of the offending key, so that a bad file refuses to start
with a message a user can act on. The reference (with an example) is docs/headend.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import LocalError


class ConfigError(LocalError):
    """The configuration is invalid; ``line`` is the 1-based line of the culprit when known."""

    def __init__(self, message: str, *, line: int | None = None, path: str | None = None) -> None:
        self.line = line
        self.path = path
        where = path or "config"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}")


# Primary addresses 1-250 (EN 13757-2 5.5); 0 is the factory default of an unconfigured module,
# which a head-end may still have to read on a single-meter bus.
_PRIMARY_MIN, _PRIMARY_MAX = 0, 250
_BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class BusConfig:
    name: str
    kind: str  # "serial" or "tcp"
    target: str  # device/URL for serial, "host:port" for tcp
    baud: int = 2400
    timeout: float | None = None  # answer timeout override, seconds
    interval: float | None = None  # default poll interval for this bus's meters


@dataclass(frozen=True, slots=True)
class MeterConfig:
    name: str
    bus: str
    primary: int | None = None
    secondary: str | None = None  # 8 BCD digits (identification number) or 16-char libmbus form
    fabrication: str | None = None  # with secondary: enhanced secondary address
    key: str | None = None  # reference into [keys]
    data: str = "standard"  # "standard" or "additional" (which telegram set to read)
    interval: float = 900.0
    breaker: bool = False  # offer a breaker switch (HTTP command and HA switch)
    # IANA zone of a meter whose clock runs local time; None: the clock runs UTC
    timezone: str | None = None

    @property
    def zone(self) -> ZoneInfo | None:
        # ZoneInfo caches by key, so a poll does not read the tz database again
        return None if self.timezone is None else ZoneInfo(self.timezone)

    @property
    def address_kind(self) -> str:
        if self.primary is not None:
            return "primary"
        return "enhanced" if self.fabrication else "secondary"


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = "sqlite:///mbuskit.db"
    lease_seconds: float = 30.0  # PostgreSQL bus lease length
    # polls kept in memory while the database is down; the rest waits in ``spool`` (a
    # directory; SQLite's default is the database path + ".spool", PostgreSQL has none)
    max_queue: int = 10_000
    spool: str | None = None

    @property
    def spool_dir(self) -> str | None:
        if self.spool is not None:
            return self.spool
        return None if self.is_postgres else self.sqlite_path + ".spool"

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> str:
        if not self.url.startswith("sqlite:///"):
            raise ConfigError(f"not an SQLite URL: {self.url}")
        return self.url[len("sqlite:///"):]


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int = 1883
    prefix: str = "mbuskit"
    discovery_prefix: str = "homeassistant"
    username: str | None = None
    password: str | None = None
    qos: int = 1
    # breaker commands from <prefix>/<meter>/breaker/set: off unless configured, because any
    # client the broker lets publish there could switch a breaker (the broker's ACL is the guard)
    commands: bool = False
    command_max_age: float = 30.0  # a JSON command with an older "time" is stale: ignored


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = "127.0.0.1"  # never exposed beyond the machine unless configured
    port: int = 8080
    token: str | None = None  # commands are refused while no token is configured


@dataclass(frozen=True, slots=True)
class PollConfig:
    interval: float = 900.0
    timeout: float = 2.0  # per read, beyond the transport's own answer window
    backoff_max: float = 3600.0  # longest wait between retries of a silent meter
    offline_after: int = 3  # consecutive failures before a meter is shown offline


@dataclass(frozen=True, slots=True)
class Config:
    name: str = "headend"
    buses: tuple[BusConfig, ...] = ()
    meters: tuple[MeterConfig, ...] = ()
    storage: StorageConfig = field(default_factory=StorageConfig)
    mqtt: MqttConfig | None = None
    http: HttpConfig = field(default_factory=HttpConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    keys: Mapping[str, bytes] = field(default_factory=dict)

    def bus(self, name: str) -> BusConfig:
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def meters_on(self, bus: str) -> tuple[MeterConfig, ...]:
        return tuple(m for m in self.meters if m.bus == bus)


# ---- locating keys in the source, since tomllib reports lines only for syntax errors ----

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(?:#.*)?$")
_KEYLINE = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


class _Lines:
    """Maps (table path, array index, key) to the line where the key is written."""

    def __init__(self, text: str) -> None:
        self.keys: dict[tuple[str, int, str], int] = {}
        self.tables: dict[tuple[str, int], int] = {}
        counts: dict[str, int] = {}
        table, index = "", 0
        for n, line in enumerate(text.splitlines(), start=1):
            h = _HEADER.match(line)
            if h:
                table = h.group(2).replace('"', "").replace("'", "").replace(" ", "")
                if h.group(1) == "[[":
                    index = counts.get(table, -1) + 1
                    counts[table] = index
                else:
                    index = 0
                self.tables.setdefault((table, index), n)
                continue
            k = _KEYLINE.match(line)
            if k:
                self.keys.setdefault((table, index, k.group(1).strip('"')), n)

    def line(self, table: str, index: int = 0, key: str | None = None) -> int | None:
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.tables.get((table, index))


class _Section:
    """One table of the file with typed getters that raise ConfigError naming the line."""

    def __init__(self, data: Mapping[str, Any], table: str, index: int, lines: _Lines,
                 path: str | None) -> None:
        self.data, self.table, self.index, self.lines, self.path = data, table, index, lines, path
        self.used: set[str] = set()

    def error(self, message: str, key: str | None = None) -> ConfigError:
        label = f"[[{self.table}]] #{self.index + 1}" if self._is_array() else f"[{self.table}]"
        text = f"{label} {key}: {message}" if key else f"{label}: {message}"
        return ConfigError(text, line=self.lines.line(self.table, self.index, key), path=self.path)

    def _is_array(self) -> bool:
        return self.table in ("buses", "meters")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        # bool is an int subclass; a number field must refuse `true`
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(f"expected {_kind_name(kind)}, got {value!r}", key)
        if not isinstance(value, kind):
            raise self.error(f"expected {_kind_name(kind)}, got {value!r}", key)
        return value

    def required(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.data:
            raise self.error(f"missing required key '{key}'")
        return self.get(key, kind)

    def duration(self, key: str, default: float | None) -> float | None:
        raw = self.get(key, (int, float, str), None)
        if raw is None:
            return default
        seconds = parse_duration(raw)
        if seconds is None or seconds <= 0:
            raise self.error(f"not a positive duration: {raw!r} (e.g. 30, \"15m\", \"1h\")", key)
        return seconds

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(f"unknown key '{key}'", key)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_duration(raw: int | float | str) -> float | None:
    """Seconds from 30, 1.5, "30s", "15m", "1h", "250ms"; None if unreadable."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    m = _DURATION.match(raw)
    if not m:
        return None
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def _check_zone(s: _Section, name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: no key ("../x", "")
        raise s.error(f"unknown time zone {name!r} (an IANA name, e.g. \"Europe/Copenhagen\")",
                      "timezone") from None


def _host_port(text: str, default_port: int, *, allow_zero: bool = False) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep:
        return (text, default_port) if text else None
    if not port.isdigit() or not (0 if allow_zero else 1) <= int(port) < 65536 or not host:
        return None
    return host.strip("[]"), int(port)


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", path=str(p)) from exc
    return parse_config(text, path=str(p))


def parse_config(text: str, *, path: str | None = None) -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            m = re.search(r"line (\d+)", str(exc))
            line = int(m.group(1)) if m else None
        raise ConfigError(f"TOML syntax: {exc}", line=line, path=path) from exc
    lines = _Lines(text)
    top = _Section(doc, "", 0, lines, path)

    def section(name: str) -> _Section | None:
        value = top.get(name, dict)
        return None if value is None else _Section(value, name, 0, lines, path)

    def array(name: str) -> list[_Section]:
        value = top.get(name, list, [])
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(f"{name} must be written as [[{name}]] tables",
                                  line=lines.line("", 0, name), path=path)
            out.append(_Section(item, name, i, lines, path))
        return out

    name = "headend"
    if (s := section("headend")) is not None:
        name = s.get("name", str, name)
        if not _NAME.match(name):
            raise s.error("use letters, digits, '_', '.', '-' (at most 64)", "name")
        s.check_unknown()

    poll = PollConfig()
    if (s := section("poll")) is not None:
        offline = s.get("offline_after", int, poll.offline_after)
        if offline < 1:
            raise s.error("must be at least 1", "offline_after")
        poll = PollConfig(
            interval=s.duration("interval", poll.interval) or poll.interval,
            timeout=s.duration("timeout", poll.timeout) or poll.timeout,
            backoff_max=s.duration("backoff_max", poll.backoff_max) or poll.backoff_max,
            offline_after=offline,
        )
        s.check_unknown()

    storage = StorageConfig()
    if (s := section("storage")) is not None:
        url = s.get("url", str, storage.url)
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise s.error("must start with sqlite:/// or postgresql://", "url")
        if url == "sqlite:///":
            raise s.error("sqlite:/// needs a file path", "url")
        max_queue = s.get("max_queue", int, storage.max_queue)
        if max_queue < 1:
            raise s.error(f"must be at least 1, got {max_queue}", "max_queue")
        spool = s.get("spool", str, None)
        if spool is not None and not spool.strip():
            raise s.error("needs a directory path", "spool")
        storage = StorageConfig(url=url, lease_seconds=s.duration("lease_seconds",
                                                                    storage.lease_seconds) or 30.0,
                                max_queue=max_queue, spool=spool)
        s.check_unknown()

    http = HttpConfig()
    if (s := section("http")) is not None:
        bind = s.get("bind", str, f"{http.host}:{http.port}")
        hp = _host_port(bind, http.port, allow_zero=True)  # port 0: any free port
        if hp is None:
            raise s.error(f"expected HOST:PORT, got {bind!r}", "bind")
        token = s.get("token", str, None)
        token_env = s.get("token_env", str, None)
        if token is not None and token_env is not None:
            raise s.error("give token or token_env, not both", "token_env")
        if token_env is not None:
            token = os.environ.get(token_env)
            if not token:
                raise s.error(f"environment variable {token_env} is not set", "token_env")
        if token is not None and len(token) < 8:
            raise s.error("token must be at least 8 characters", "token")
        http = HttpConfig(host=hp[0], port=hp[1], token=token)
        s.check_unknown()

    mqtt: MqttConfig | None = None
    if (s := section("mqtt")) is not None:
        broker = s.required("broker", str)
        hp = _host_port(broker.removeprefix("mqtt://"), 1883)
        if hp is None:
            raise s.error(f"expected HOST[:PORT], got {broker!r}", "broker")
        qos = s.get("qos", int, 1)
        if qos not in (0, 1, 2):
            raise s.error("must be 0, 1 or 2", "qos")
        username, password = s.get("username", str, None), s.get("password", str, None)
        commands = s.get("commands", bool, False)
        if commands and not (username and password):
            # anonymous clients cannot be told apart, so no ACL can keep them off the command
            # topics
            raise s.error("commands = true needs the broker credentials username and password "
                          "(and a broker ACL on <prefix>/+/breaker/set, docs/headend.md)",
                          "commands")
        mqtt = MqttConfig(
            host=hp[0], port=hp[1],
            prefix=s.get("prefix", str, "mbuskit").strip("/"),
            discovery_prefix=s.get("discovery_prefix", str, "homeassistant").strip("/"),
            username=username, password=password, qos=qos, commands=commands,
            command_max_age=s.duration("command_max_age", 30.0) or 30.0,
        )
        s.check_unknown()

    keys: dict[str, bytes] = {}
    if (s := section("keys")) is not None:
        for ref in list(s.data):
            value = s.get(ref, str)
            try:
                key = bytes.fromhex(value)
            except ValueError:
                raise s.error("not hex", ref) from None
            if len(key) != 16:
                raise s.error(f"an AES-128 key is 16 bytes, got {len(key)}", ref)
            keys[ref] = key

    buses: list[BusConfig] = []
    for s in array("buses"):
        bname = s.required("name", str)
        if not _NAME.match(bname):
            raise s.error("use letters, digits, '_', '.', '-' (at most 64)", "name")
        if any(b.name == bname for b in buses):
            raise s.error(f"duplicate bus name {bname!r}", "name")
        serial, tcp = s.get("serial", str), s.get("tcp", str)
        if (serial is None) == (tcp is None):
            raise s.error("give exactly one of serial = \"/dev/ttyUSB0\" or tcp = \"host:port\"")
        if tcp is not None and (":" not in tcp or _host_port(tcp, 0) is None):
            raise s.error(f"expected HOST:PORT, got {tcp!r}", "tcp")
        baud = s.get("baud", int, 2400)
        if baud not in _BAUDS:
            raise s.error(f"unsupported baud rate {baud} (one of {', '.join(map(str, _BAUDS))})",
                          "baud")
        buses.append(BusConfig(
            name=bname, kind="serial" if serial is not None else "tcp",
            target=str(serial if serial is not None else tcp), baud=baud,
            timeout=s.duration("timeout", None), interval=s.duration("interval", None),
        ))
        s.check_unknown()

    meters: list[MeterConfig] = []
    seen_addr: set[tuple[str, str]] = set()
    for s in array("meters"):
        bus_name = s.required("bus", str)
        bus = next((b for b in buses if b.name == bus_name), None)
        if bus is None:
            raise s.error(f"no [[buses]] named {bus_name!r}", "bus")
        primary = s.get("primary", int)
        secondary = s.get("secondary", str)
        fabrication = s.get("fabrication", str)
        if (primary is None) == (secondary is None):
            raise s.error("give exactly one of primary = N or secondary = \"IIIIIIII\"")
        if primary is not None and not _PRIMARY_MIN <= primary <= _PRIMARY_MAX:
            raise s.error(f"primary address must be 0-250, got {primary}", "primary")
        if secondary is not None and not re.fullmatch(r"[0-9]{8}|[0-9A-Fa-f]{16}", secondary):
            raise s.error("expected 8 BCD digits or the 16-character libmbus form", "secondary")
        if fabrication is not None:
            if secondary is None:
                raise s.error("fabrication (enhanced address) needs secondary", "fabrication")
            if not re.fullmatch(r"[0-9]{8}", fabrication):
                raise s.error("expected 8 BCD digits", "fabrication")
        address = str(primary) if primary is not None else f"{secondary}/{fabrication or ''}"
        if (bus_name, address) in seen_addr:
            raise s.error(f"another meter on bus {bus_name!r} has this address",
                          "primary" if primary is not None else "secondary")
        seen_addr.add((bus_name, address))
        key = s.get("key", str)
        if key is not None and key not in keys:
            raise s.error(f"no key {key!r} in [keys]", "key")
        data = s.get("data", str, "standard")
        if data not in ("standard", "additional"):
            raise s.error("must be \"standard\" or \"additional\"", "data")
        default_name = f"{bus_name}-{primary if primary is not None else secondary}"
        mname = s.get("name", str, default_name)
        if not _NAME.match(mname):
            raise s.error("use letters, digits, '_', '.', '-' (at most 64)", "name")
        if any(m.name == mname for m in meters):
            raise s.error(f"duplicate meter name {mname!r}", "name")
        interval = s.duration("interval", bus.interval or poll.interval) or poll.interval
        timezone = s.get("timezone", str, None)
        if timezone is not None:
            _check_zone(s, timezone)
        meters.append(MeterConfig(
            name=mname, bus=bus_name, primary=primary, secondary=secondary,
            fabrication=fabrication, key=key, data=data, interval=interval,
            breaker=s.get("breaker", bool, False), timezone=timezone,
        ))
        s.check_unknown()

    top.check_unknown()
    return Config(name=name, buses=tuple(buses), meters=tuple(meters), storage=storage,
                  mqtt=mqtt, http=http, poll=poll, keys=keys)


__all__ = [
    "BusConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "MeterConfig",
    "MqttConfig",
    "PollConfig",
    "StorageConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]
