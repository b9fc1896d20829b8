"""Decode-to-values throughput over the libmbus test-frames corpus, three decoders, one process.

    .venv/bin/python bench/decode.py [--runs N] [--min-seconds S] [--corpus DIR]

Work per frame: mbuskit ``mbuskit.decode(b)`` (values are computed by the decoder, nothing is
touched afterwards), pyMeterBus 0.8.5 ``meterbus.load(b).interpreted`` and pymbusparser 0.5.3
``pymbusparser.parse(b)``. Each run repeats the whole corpus until at least ``--min-seconds``
have passed, failures included (caught and counted); the figure is the median of ``--runs``
runs. The last line is ``ratio vs pymbusparser X.XX`` (mbuskit frames/s over pymbusparser's).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus/libmbus/test-frames"


def load_hex(path: Path) -> bytes:
    """Hex text as libmbus's mbus_hex2bin reads it: whitespace-separated, up to a bad token."""
    out = bytearray()
    for token in path.read_text(encoding="ascii", errors="replace").split():
        try:
            out.append(int(token, 16))
        except ValueError:
            break
        if int(token, 16) > 0xFF:
            out.pop()
            break
    return bytes(out)


def count_failures(decode: Callable[[bytes], object], frames: list[bytes]) -> int:
    failures = 0
    for b in frames:  # also the warm-up pass
        try:
            decode(b)
        except Exception:
            failures += 1
    return failures


def one_run(decode: Callable[[bytes], object], frames: list[bytes], min_seconds: float) -> float:
    """Frames per second of whole-corpus passes repeated for at least ``min_seconds``."""
    done = 0
    start = time.perf_counter()
    while True:
        for b in frames:
            try:  # noqa: SIM105 (a with-block per frame would add its own cost to every figure)
                decode(b)
            except Exception:
                pass
        done += len(frames)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def decoders() -> list[tuple[str, Callable[[bytes], object]]]:
    import mbuskit

    found: list[tuple[str, Callable[[bytes], object]]] = [
        (f"mbuskit {_version('mbuskit')}", mbuskit.decode)
    ]
    try:
        import meterbus

        logging.getLogger("meterbus").setLevel(logging.CRITICAL)

        def pymeterbus(b: bytes) -> object:
            return meterbus.load(b).interpreted

        found.append((f"pyMeterBus {_version('pyMeterBus')}", pymeterbus))
    except ImportError:
        print("pyMeterBus not installed (pip install mbuskit[bench])", file=sys.stderr)
    try:
        import pymbusparser

        def rust(b: bytes) -> object:
            return pymbusparser.parse(b)

        found.append((f"pymbusparser {_version('pymbusparser')}", rust))
    except ImportError:
        print("pymbusparser not installed (pip install mbuskit[bench])", file=sys.stderr)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = ap.parse_args(argv)
    paths = sorted(args.corpus.glob("*.hex"))
    if not paths:
        print(f"no .hex frames in {args.corpus}", file=sys.stderr)
        return 2
    frames = [load_hex(p) for p in paths]
    print(f"corpus: {len(frames)} frames, {sum(map(len, frames))} bytes ({args.corpus})")
    print(f"{args.runs} runs of >= {args.min_seconds} s each; median (min-max) frames/s")
    found = decoders()
    failures = {name: count_failures(fn, frames) for name, fn in found}
    # Runs are interleaved (one run of each decoder per round) so that a busy machine slows
    # every decoder alike instead of whichever happened to run at the time.
    rates: dict[str, list[float]] = {name: [] for name, _ in found}
    for _ in range(args.runs):
        for name, fn in found:
            rates[name].append(one_run(fn, frames, args.min_seconds))
    medians: dict[str, float] = {}
    for name, _ in found:
        med = statistics.median(rates[name])
        medians[name.split()[0]] = med
        print(f"{name:24} {med:10,.0f} fps ({min(rates[name]):,.0f}-{max(rates[name]):,.0f})  "
              f"{1e6 / med:7.1f} us/frame  raised on {failures[name]}/{len(frames)}")
    ours, theirs = medians.get("mbuskit"), medians.get("pymbusparser")
    if "pyMeterBus" in medians and ours:
        print(f"ratio vs pyMeterBus {ours / medians['pyMeterBus']:.2f}")
    if ours is None or theirs is None:
        print("ratio vs pymbusparser n/a")
        return 1
    print(f"ratio vs pymbusparser {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
