"""EN 13757-2 link layer: frames, C-field, checksums, streaming reader."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbuskit.codec.link import (
    Ack,
    FrameReader,
    Function,
    LongFrame,
    ShortFrame,
    Skipped,
    control,
    decode_frame,
    function_of,
)
from mbuskit.errors import EncodeError, FrameError, MBusError

# Master->slave frames from shared/research/kamstrup-frames.txt, section D
SND_NKE_253 = bytes.fromhex("1040FD3D16")
REQ_UD2_FCB1 = bytes.fromhex("107B017C16")
SELECT_382 = bytes.fromhex("680B0B6853FD52209183142D2C01024616")
SET_ADDRESS_5 = bytes.fromhex("68060668530151017A052516")
BAUD_9600 = bytes.fromhex("680303685301BD1116")


def test_known_frames_decode_and_reencode() -> None:
    nke = decode_frame(SND_NKE_253)
    assert nke == ShortFrame(0x40, 0xFD)
    assert nke.function is Function.SND_NKE
    req = decode_frame(REQ_UD2_FCB1)
    assert isinstance(req, ShortFrame)
    assert req.function is Function.REQ_UD2 and req.fcb and req.fcv
    sel = decode_frame(SELECT_382)
    assert isinstance(sel, LongFrame)
    assert (sel.control, sel.address, sel.ci) == (0x53, 0xFD, 0x52)
    assert sel.data == bytes.fromhex("209183142D2C0102")
    baud = decode_frame(BAUD_9600)
    assert isinstance(baud, LongFrame) and baud.is_control_frame and baud.ci == 0xBD
    for raw in (SND_NKE_253, REQ_UD2_FCB1, SELECT_382, SET_ADDRESS_5, BAUD_9600):
        assert decode_frame(raw).encode() == raw
    assert decode_frame(b"\xe5") == Ack()


def test_control_field() -> None:
    assert control(Function.SND_NKE) == 0x40
    assert control(Function.REQ_UD2, fcb=True) == 0x7B
    assert control(Function.REQ_UD2, fcb=False) == 0x5B
    assert control(Function.SND_UD) == 0x53
    assert control(Function.SND_UD, fcb=True) == 0x73
    assert control(Function.RSP_UD) == 0x08
    assert function_of(0x18) is Function.RSP_UD
    assert function_of(0x5A) is Function.REQ_UD1
    with pytest.raises(EncodeError):
        control(Function.SND_NKE, fcb=True)


@pytest.mark.parametrize(
    ("raw", "offset", "words"),
    [
        (bytes.fromhex("1040FD3E16"), 3, "checksum"),
        (bytes.fromhex("1040FD3D17"), 4, "stop"),
        (SET_ADDRESS_5[:-1], 11, "truncated"),
        (bytes.fromhex("68060768530151017A052516"), 2, "differ"),
        (bytes.fromhex("68060669530151017A052516"), 3, "second start"),
        (bytes.fromhex("68060668530151017A052616"), 10, "checksum"),
        (bytes.fromhex("68060668530151017A052517"), 11, "stop"),
        (bytes.fromhex("680202685301"), 1, "below 3"),
        (bytes.fromhex("AA"), 0, "starts no frame"),
        (b"", 0, "empty"),
        (SND_NKE_253 + b"\x00", 5, "after the end"),
    ],
)
def test_bad_frames_raise_with_offset(raw: bytes, offset: int | None, words: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(raw)
    if offset is not None:
        assert info.value.offset == offset
    assert words in str(info.value)


def test_long_frame_limits() -> None:
    LongFrame(0x08, 1, 0x72, bytes(252)).encode()
    with pytest.raises(EncodeError):
        LongFrame(0x08, 1, 0x72, bytes(253))
    with pytest.raises(EncodeError):
        ShortFrame(0x40, 256)


def _frames() -> st.SearchStrategy[Ack | ShortFrame | LongFrame]:
    byte = st.integers(0, 255)
    return st.one_of(
        st.just(Ack()),
        st.builds(ShortFrame, byte, byte),
        st.builds(LongFrame, byte, byte, byte, st.binary(max_size=252)),
    )


@given(st.lists(_frames(), max_size=6), st.integers(1, 17))
def test_reader_any_chunking(frames: list[Ack | ShortFrame | LongFrame], chunk: int) -> None:
    stream = b"".join(f.encode() for f in frames)
    reader = FrameReader()
    got: list[object] = []
    for i in range(0, len(stream), chunk):
        got += reader.feed(stream[i : i + chunk])
    assert got == frames
    assert reader.pending == 0


def test_reader_byte_by_byte_and_noise() -> None:
    reader = FrameReader()
    stream = b"\x00\xff" + SELECT_382 + b"\x55" + SND_NKE_253 + b"\xe5"
    got: list[object] = []
    for b in stream:
        got += reader.feed(bytes([b]))
    frames = [g for g in got if not isinstance(g, Skipped)]
    skipped = [g for g in got if isinstance(g, Skipped)]
    assert frames == [decode_frame(SELECT_382), decode_frame(SND_NKE_253), Ack()]
    assert b"".join(s.data for s in skipped) == b"\x00\xff\x55"


def test_reader_resyncs_after_bad_checksum() -> None:
    bad = bytearray(SET_ADDRESS_5)
    bad[-2] ^= 0xFF
    reader = FrameReader()
    got = reader.feed(bytes(bad) + SND_NKE_253)
    assert got[-1] == decode_frame(SND_NKE_253)
    assert isinstance(got[0], Skipped)
    assert "checksum" in got[0].reason


def test_reader_flush_reports_partial() -> None:
    reader = FrameReader()
    assert reader.feed(SELECT_382[:7]) == []
    assert reader.pending == 7
    flushed = reader.flush()
    assert flushed == [Skipped(SELECT_382[:7], "incomplete frame")]
    assert reader.pending == 0


def test_flush_finds_frame_hidden_behind_false_start() -> None:
    # a stray 68h announcing a long frame would otherwise swallow the next good frame
    reader = FrameReader()
    assert reader.feed(bytes.fromhex("68202068") + SND_NKE_253) == []
    got = reader.flush()
    assert got == [
        Skipped(bytes.fromhex("68202068"), "incomplete frame"),
        decode_frame(SND_NKE_253),
    ]


@given(st.binary(max_size=300))
def test_only_mbus_errors_escape(data: bytes) -> None:
    with contextlib.suppress(MBusError):
        decode_frame(data)
    reader = FrameReader()
    reader.feed(data)
    reader.flush()
    assert reader.pending == 0
