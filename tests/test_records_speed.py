"""Decode speed of the record codec against the Rust parser's Python binding, same process.

The bar (DESIGN.md section 5): records of the libmbus corpus must decode faster than
pymbusparser parses the whole frames. Both run interleaved so that machine load hits both.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mbuskit.link import LongFrame, decode_frame
from mbuskit.records import decode_records

pymbusparser = pytest.importorskip("pymbusparser")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "libmbus" / "test-frames"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CORPUS.is_dir(), reason="libmbus corpus not present")]


def _frames() -> list[tuple[bytes, bytes]]:
    out = []
    for path in sorted(CORPUS.glob("*.hex")):
        raw = bytes.fromhex(" ".join(path.read_text().split()))
        frame = decode_frame(raw)
        if isinstance(frame, LongFrame) and frame.ci in (0x72, 0x76):
            out.append((raw, frame.data[12:]))
    return out


def test_records_decode_faster_than_pymbusparser() -> None:
    frames = _frames()
    assert len(frames) > 50
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(7):
        start = time.perf_counter()
        for _, payload in frames:
            decode_records(payload)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        for raw, _ in frames:
            pymbusparser.parse(raw)
        theirs.append(time.perf_counter() - start)
    ratio = min(theirs) / min(ours)
    print(f"records decode is {ratio:.2f}x pymbusparser's parse")
    assert ratio > 1.0
