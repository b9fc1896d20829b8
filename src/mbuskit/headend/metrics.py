"""Prometheus text exposition (format 0.0.4) of the head-end's state."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .scheduler import Scheduler

_STATES = ("unknown", "ok", "retrying", "offline")


def _label(value: str) -> str:
    # label values escape backslash, double quote and newline (exposition format 0.0.4)
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{labels} {_num(value)}")


def render_metrics(s: Scheduler, *, wall: float | None = None) -> str:
    o = _Out()
    h = s.health
    o.family("mbus_meter_up", "gauge", "1 if the meter's last read succeeded",
             ((_labels(meter=n, bus=x.bus), 1.0 if x.state == "ok" else 0.0)
              for n, x in h.items()))
    o.family("mbus_meter_state", "gauge", "Meter health state (one series per state)",
             ((_labels(meter=n, state=st), 1.0 if x.state == st else 0.0)
              for n, x in h.items() for st in _STATES))
    o.family("mbus_meter_reads_total", "counter", "Successful reads of the meter",
             ((_labels(meter=n), float(x.reads)) for n, x in h.items()))
    o.family("mbus_meter_errors_total", "counter", "Failed reads (timeouts, bad telegrams)",
             ((_labels(meter=n), float(x.errors)) for n, x in h.items()))
    o.family("mbus_meter_last_success_timestamp_seconds", "gauge",
             "Time of the last successful read",
             ((_labels(meter=n), x.last_ok) for n, x in h.items() if x.last_ok is not None))
    o.family("mbus_meter_read_duration_seconds", "gauge", "Duration of the last transaction",
             ((_labels(meter=n), x.last_duration) for n, x in h.items()
              if x.last_duration is not None))
    o.family("mbus_register_value", "gauge", "Latest value of each register, in its SI unit",
             ((_labels(meter=r.meter, register=r.register, unit=r.unit), r.value)
              for p in s.latest.values() for r in p.readings))
    now = wall if wall is not None else s.monotonic()
    o.family("mbus_bus_busy_ratio", "gauge", "Bus time in transactions / wall time since start",
             ((_labels(bus=b.name), b.busy_seconds / max(now - b.started, 1e-9))
              for b in s.buses.values() if b.owned))
    o.family("mbus_bus_owned", "gauge", "1 if this worker polls the bus (holds its lease)",
             ((_labels(bus=b.name), 1.0 if b.owned else 0.0) for b in s.buses.values()))
    o.family("mbus_bus_polls_total", "counter", "Successful polls on the bus",
             ((_labels(bus=b.name), float(b.polls)) for b in s.buses.values()))
    o.family("mbus_readings_stored_total", "counter", "Readings committed by this process",
             (("", float(s.stored)),))
    o.family("mbus_storage_queue", "gauge", "Polls read but not yet committed",
             (("", float(s.pending)),))
    o.family("mbus_storage_up", "gauge", "1 if the last commit succeeded",
             (("", 1.0 if s.storage_ok else 0.0),))
    o.family("mbus_storage_errors_total", "counter", "Failed commit attempts",
             (("", float(s.storage_errors)),))
    return "\n".join(o.lines) + "\n"


__all__ = ["render_metrics"]
