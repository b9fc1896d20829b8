"""The public API of the package root is pinned: names are never renamed once released."""

from __future__ import annotations

import inspect

import mbuskit

PINNED = {
    "CI", "BusTimeout", "DataRecord", "DecodeError", "EncodeError", "FrameError", "KeyStore",
    "LongHeader", "MBusError", "ProtocolError", "SecondaryAddress", "SecurityError", "Selection",
    "ShortHeader", "Telegram", "TransportError", "decode", "encode",
}


def test_all_is_pinned() -> None:
    assert set(mbuskit.__all__) == PINNED
    assert len(mbuskit.__all__) == len(PINNED)  # no duplicates


def test_every_name_exists() -> None:
    for name in mbuskit.__all__:
        assert getattr(mbuskit, name) is not None


def test_decode_options_are_keyword_only() -> None:
    params = inspect.signature(mbuskit.decode).parameters
    assert params["keys"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["strict"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["strict"].default is True


def test_errors_share_one_root() -> None:
    for name in ("BusTimeout", "DecodeError", "EncodeError", "FrameError", "ProtocolError",
                 "SecurityError", "TransportError"):
        assert issubclass(getattr(mbuskit, name), mbuskit.MBusError)
