"""`mbus decode`: input forms, output formats, exit codes, key handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mbuskit.cli.decode import EXIT_FRAME, EXIT_SECURITY, EXIT_USAGE, parse_frame_text
from mbuskit.cli.main import main
from mbuskit.codec.link import LongFrame
from mbuskit.codec.telegram import decode_telegram, encode_telegram, encrypt_telegram
from mbuskit.errors import FrameError

KAM_HEX = ("68 46 46 68 08 78 72 20 91 83 14 2D 2C 01 02 04 00 00 00 04 06 00 00 00 00 04 22 09 00"
           " 00 00 04 2B 00 00 00 00 14 2B 00 00 00 00 84 50 06 00 00 00 00 84 60 06 00 00 00 00 0F"
           " 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 24 16")
KEY_HEX = "000102030405060708090A0B0C0D0E0F"


def run(args: list[str], data: bytes | str = b"") -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["decode", *args], input=data)
    return result.exit_code, result.stdout, result.stderr


def _encrypted_hex() -> str:
    body = "209183142D2C010209000000" + "0406D2040000042209000000"
    t = decode_telegram(LongFrame(0x08, 0x01, 0x72, bytes.fromhex(body)).encode())
    return encode_telegram(encrypt_telegram(t, bytes.fromhex(KEY_HEX))).encode().hex()


def test_parse_frame_text_forms() -> None:
    raw = bytes.fromhex(KAM_HEX)
    assert parse_frame_text(KAM_HEX.encode()) == raw
    assert parse_frame_text(KAM_HEX.replace(" ", "").lower().encode() + b"\n") == raw
    assert parse_frame_text(b"0x68,0x03:0x03") == bytes.fromhex("680303")
    assert parse_frame_text(raw) == raw  # binary
    assert parse_frame_text(b"\xe5") == b"\xe5"


@pytest.mark.parametrize(("text", "match"), [(b"", "no frame"), (b"68 0G", "'G'"),
                                             (b"D 04 04", "odd number"),
                                             (b"\xff\xfe\x00", "neither hex")])
def test_parse_frame_text_errors(text: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        parse_frame_text(text)


def test_json_from_stdin() -> None:
    code, out, _ = run([], KAM_HEX)
    assert code == 0
    doc = json.loads(out)
    assert doc["header"]["secondary_address"] == "148391202D2C0102"
    assert len(doc["records"]) == 7


def test_file_binary_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "kam.bin"
    path.write_bytes(bytes.fromhex(KAM_HEX))
    code, out, _ = run(["--format", "xml", str(path)])
    assert code == 0 and "<Id>14839120</Id>" in out
    code, out, _ = run(["--format", "xml-normalized", str(path)])
    assert code == 0 and "<Quantity>Energy</Quantity>" in out
    code, out, _ = run(["--format", "csv", str(path)])
    assert code == 0 and "148391202D2C0102" in out
    code, out, _ = run(["--format", "table", str(path)])
    assert code == 0 and "KAM" in out


def test_bad_frame_exits_1_with_one_line() -> None:
    code, out, err = run([], "68 04 04 68 08 01 70 08 82 16")
    assert code == EXIT_FRAME and out == ""
    assert err.count("\n") == 1 and "checksum" in err and "Traceback" not in err


def test_damaged_record_lenient() -> None:
    raw = LongFrame(0x08, 0x01, 0x78, bytes.fromhex("0406D2040000 0406D2".replace(" ", "")))
    code, _, err = run([], raw.encode().hex())
    assert code == EXIT_FRAME and "premature end" in err
    code, out, _ = run(["--lenient"], raw.encode().hex())
    assert code == 0
    doc = json.loads(out)
    assert len(doc["records"]) == 1 and doc["diagnostics"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(["--format", "yaml"], KAM_HEX)[0] == EXIT_USAGE
    code, _, err = run([str(tmp_path / "missing.hex")])
    assert code == EXIT_USAGE and "cannot read" in err
    assert run(["--key", KEY_HEX, "--keys", str(tmp_path / "k")], KAM_HEX)[0] == EXIT_USAGE


def test_encrypted_with_key_and_key_file(tmp_path: Path) -> None:
    frame_hex = _encrypted_hex()
    code, _, err = run([], frame_hex)
    assert code == EXIT_SECURITY and "no key" in err and "148391202D2C0102" in err
    code, out, _ = run(["--key", KEY_HEX], frame_hex)
    assert code == 0
    data = [r for r in json.loads(out)["records"] if r["kind"] == "data"]
    assert data[0]["unit"] == "Wh" and data[0]["raw"] == "0406d2040000"
    keys = tmp_path / "keys"
    keys.write_text(f"148391202D2C0102 = {KEY_HEX}\n")
    assert run(["--keys", str(keys)], frame_hex)[0] == 0
    code, _, err = run(["--key", "FF" * 16], frame_hex)
    assert code == EXIT_SECURITY and "wrong key" in err
    assert "FFFFFFFF" not in err


def test_bad_key_never_echoed(tmp_path: Path) -> None:
    code, _, err = run(["--key", "00112233445566778899AABBCCDDEEF"], KAM_HEX)
    assert code == EXIT_SECURITY and "00112233" not in err
    keys = tmp_path / "keys"
    keys.write_text("14839120 = 00112233445566778899AABBCCDDEE\n")
    code, _, err = run(["--keys", str(keys)], KAM_HEX)
    assert code == EXIT_SECURITY and ":1:" in err and "00112233" not in err
