"""Load profile and seeded noise for the electricity meter model.

Pure and deterministic: a sample is a function of (seed, phase, sample index, time of day) only,
so a meter advanced in one step or in a thousand lands on the same registers. The noise comes
from splitmix64 over (seed, stream, index) rather than the ``random`` module, which the protocol
core may not import (docs/architecture.md section 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ..errors import LocalError

_MASK64 = (1 << 64) - 1
_CHUNK_BITS = 21
_CHUNK_MASK = (1 << _CHUNK_BITS) - 1
_CHUNK_HALF = 1 << (_CHUNK_BITS - 1)

NOMINAL_VOLTAGE_MV = 230_000

# A household day (factor of the variable load per hour, 0..1): low at night, a morning
# and a larger evening peak. Linear interpolation between the hour points.
DEFAULT_DAILY_SHAPE: tuple[float, ...] = (
    0.10, 0.08, 0.07, 0.07, 0.08, 0.15, 0.45, 0.60, 0.45, 0.30, 0.25, 0.28,
    0.35, 0.30, 0.25, 0.25, 0.35, 0.60, 0.85, 1.00, 0.90, 0.70, 0.45, 0.20,
)  # fmt: skip


class ProfileError(LocalError):
    """A load profile parameter is out of range."""


def splitmix64(x: int) -> int:
    """One splitmix64 step (Steele, Lea, Flood 2014): a 64-bit bijective mixer."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: int) -> int:
    """Key of one independent noise stream (one per phase) of a seeded meter."""
    return splitmix64((seed & _MASK64) ^ splitmix64(stream & _MASK64))


def noise3(key: int, index: int) -> tuple[float, float, float]:
    """Three uniform values in [-1, 1) for sample ``index`` of the stream ``key``."""
    h = splitmix64(key ^ (index & _MASK64))
    a = ((h & _CHUNK_MASK) - _CHUNK_HALF) / _CHUNK_HALF
    b = (((h >> _CHUNK_BITS) & _CHUNK_MASK) - _CHUNK_HALF) / _CHUNK_HALF
    c = (((h >> (2 * _CHUNK_BITS)) & _CHUNK_MASK) - _CHUNK_HALF) / _CHUNK_HALF
    return a, b, c


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """What the installation behind the meter draws (primary side for a CT meter).

    Per phase: load = (base + variable * shape(hour)) * share * (1 + noise * n), reactive load
    from the power factor, minus a constant capacitive part (electronics), minus the solar
    export (a half sine between sunrise and sunset, shared equally by the phases).
    """

    base_load_w: float = 250.0
    variable_load_w: float = 2500.0
    daily_shape: tuple[float, ...] = DEFAULT_DAILY_SHAPE
    phase_share: tuple[float, float, float] = (0.40, 0.35, 0.25)
    noise: float = 0.15  # relative amplitude of the load noise
    power_factor: float = 0.95  # of the load (inductive)
    capacitive_var: float = 150.0  # whole meter, shared by the phases
    solar_peak_w: float = 0.0  # 0: no export
    sunrise_h: float = 6.0
    sunset_h: float = 20.0
    voltage_noise: float = 0.01  # relative amplitude around 230 V
    utc_offset_s: int = 0  # the household's day runs in local time

    def __post_init__(self) -> None:
        numbers = [getattr(self, f.name) for f in fields(self)]
        flat = [x for v in numbers for x in (v if isinstance(v, tuple) else (v,))]
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in flat):
            raise ProfileError("load profile parameters must be finite numbers")
        if self.base_load_w < 0 or self.variable_load_w < 0 or self.solar_peak_w < 0:
            raise ProfileError("loads and solar peak must be >= 0 W")
        if len(self.daily_shape) != 24 or any(f < 0 for f in self.daily_shape):
            raise ProfileError("daily_shape needs 24 factors >= 0 (one per hour)")
        if len(self.phase_share) != 3 or any(s < 0 for s in self.phase_share):
            raise ProfileError("phase_share needs 3 shares >= 0")
        if not 0 < self.power_factor <= 1:
            raise ProfileError("power_factor must be in (0, 1]")
        if not 0 <= self.noise < 1 or not 0 <= self.voltage_noise < 0.2:
            raise ProfileError("noise must be in [0, 1), voltage_noise in [0, 0.2)")
        if not 0 <= self.sunrise_h < self.sunset_h <= 24:
            raise ProfileError("need 0 <= sunrise_h < sunset_h <= 24")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadProfile:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ProfileError(f"unknown load profile fields: {sorted(unknown)}")
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ProfileError(f"bad load profile: {exc}") from exc


Tri = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Sample:
    """Per-phase values held constant for one sample period (primary side, whole units).

    ``load_*`` is what the installation would draw with the breaker closed (smart disconnect
    judges that); ``p_w``/``q_var`` are signed, import positive, inductive positive.
    """

    p_w: Tri
    q_var: Tri
    voltage_mv: Tri
    load_current_ma: Tri


class ProfileSampler:
    """Evaluates a LoadProfile for a seeded meter with ``phases`` phases."""

    def __init__(self, profile: LoadProfile, seed: int, phases: int) -> None:
        self.profile = profile
        self.phases = phases
        self._keys = tuple(stream_key(seed, i) for i in range(3))
        self._tan_phi = math.tan(math.acos(profile.power_factor))
        if phases == 1:
            self._share: tuple[float, ...] = (1.0, 0.0, 0.0)
        else:
            total = sum(profile.phase_share) or 1.0
            self._share = tuple(s / total for s in profile.phase_share)

    def shape(self, t_s: float) -> float:
        hour = ((t_s + self.profile.utc_offset_s) % 86400) / 3600
        i = int(hour)
        frac = hour - i
        shape = self.profile.daily_shape
        return shape[i] + (shape[(i + 1) % 24] - shape[i]) * frac

    def solar(self, t_s: float) -> float:
        p = self.profile
        if p.solar_peak_w == 0:
            return 0.0
        hour = ((t_s + p.utc_offset_s) % 86400) / 3600
        if not p.sunrise_h < hour < p.sunset_h:
            return 0.0
        day = p.sunset_h - p.sunrise_h
        return p.solar_peak_w * math.sin(math.pi * (hour - p.sunrise_h) / day)

    def power(self, index: int, t_s: float) -> tuple[Tri, Tri]:
        """Signed per-phase active (W) and reactive (var) power of sample ``index``.

        The hot path of a simulated day: splitmix64 is inlined and voltages and currents are
        left to sample(), which only read-outs and the smart-disconnect current limit need.
        """
        p = self.profile
        demand = p.base_load_w + p.variable_load_w * self.shape(t_s)
        solar = self.solar(t_s) / self.phases
        cap = p.capacitive_var / self.phases
        noise, tan_phi = p.noise, self._tan_phi
        ps = [0, 0, 0]
        qs = [0, 0, 0]
        for ph in range(self.phases):
            z = ((self._keys[ph] ^ (index & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
            h = z ^ (z >> 31)
            n_p = ((h & _CHUNK_MASK) - _CHUNK_HALF) / _CHUNK_HALF
            n_q = (((h >> _CHUNK_BITS) & _CHUNK_MASK) - _CHUNK_HALF) / _CHUNK_HALF
            load = demand * self._share[ph] * (1.0 + noise * n_p)
            load = max(load, 0.0)
            ps[ph] = round(load - solar * (1.0 + noise * n_q / 3))  # cloud flicker
            qs[ph] = round(load * tan_phi * (1.0 + noise * n_q) - cap)
        return (ps[0], ps[1], ps[2]), (qs[0], qs[1], qs[2])

    def sample(self, index: int, t_s: float) -> Sample:
        ps, qs = self.power(index, t_s)
        vs = [0, 0, 0]
        cs = [0, 0, 0]
        for ph in range(self.phases):
            n_v = noise3(self._keys[ph], index)[2]
            v = round(NOMINAL_VOLTAGE_MV * (1.0 + self.profile.voltage_noise * n_v))
            vs[ph] = v
            # S / U: W / V = A; times 1000 for mA and 1000 again because U is in mV
            cs[ph] = round(math.hypot(ps[ph], qs[ph]) * 1_000_000 / v)
        return Sample(
            p_w=ps,
            q_var=qs,
            voltage_mv=(vs[0], vs[1], vs[2]),
            load_current_ma=(cs[0], cs[1], cs[2]),
        )


__all__ = [
    "DEFAULT_DAILY_SHAPE",
    "NOMINAL_VOLTAGE_MV",
    "LoadProfile",
    "ProfileError",
    "ProfileSampler",
    "Sample",
    "noise3",
    "splitmix64",
    "stream_key",
]
