"""The generic slave state machine: addressing, selection, FCB, SND_UD, baud, errors."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mbuskit.slave.machine as slave_module
from mbuskit.codec.link import Ack, FrameReader, LongFrame, ShortFrame, decode_frame
from mbuskit.errors import EncodeError
from mbuskit.slave.machine import (
    ACCEPTED,
    APP_ERROR_UNIMPLEMENTED_CI,
    CommandResult,
    EventKind,
    Identity,
    Reply,
    Response,
    Slave,
    manufacturer_code,
    refused,
)

# master->slave vectors of shared/research/kamstrup-frames.txt section D
D1_NKE_253 = bytes.fromhex("1040FD3D16")
D2_REQ_FCB1 = bytes.fromhex("107B017C16")
D2_REQ_FCB0 = bytes.fromhex("105B015C16")
D3_SELECT = bytes.fromhex("680B0B6853FD52209183142D2C01024616")
D4_WILDCARD = bytes.fromhex("680B0B6853FD52FFFFFF1F2D2CFF021816")
D5_ENHANCED = bytes.fromhex("68111168 53FD52 209183142D2C0102 0C7878563412 DE16".replace(" ", ""))
D7_BAUD_9600 = bytes.fromhex("680303685301BD1116")
D8_RESET = bytes.fromhex("680303685301 50A416".replace(" ", ""))
D8_RESET_10 = bytes.fromhex("68040468530150 10B416".replace(" ", ""))

ID_382 = Identity(14839120, "KAM", 1, 2, fabrication=12345678)


@dataclass
class FakeDevice:
    """A device whose read-out is ``telegrams`` telegrams; telegram i carries i and the time."""

    ident: Identity = ID_382
    telegrams: int = 3
    commands: list[tuple[int, bytes]] = field(default_factory=list)
    resets: list[int | None] = field(default_factory=list)

    def identity(self) -> Identity:
        return self.ident

    def respond(self, now: float, index: int) -> Response:
        return Response(0x78, bytes((index, int(now) & 0xFF)),
                        more_follows=index < self.telegrams - 1)

    def command(self, ci: int, data: bytes, now: float) -> CommandResult:
        self.commands.append((ci, data))
        if ci == 0x51 and data[:2] == b"\x01\x7a":
            return CommandResult(True, primary_address=data[2])
        if ci == 0x51 and data[:1] == b"\xee":
            return refused("device says no")
        if ci == 0x51:
            return ACCEPTED
        return refused("unknown CI", APP_ERROR_UNIMPLEMENTED_CI)

    def reset(self, subcode: int | None, now: float) -> CommandResult:
        self.resets.append(subcode)
        return ACCEPTED


def rsp(reply: Reply | None) -> LongFrame:
    assert reply is not None
    frame = decode_frame(reply.data)
    assert isinstance(frame, LongFrame)
    assert frame.control == 0x08
    return frame


def req(address: int, fcb: bool = False, fcv: bool = True) -> ShortFrame:
    return ShortFrame(0x4B | (0x20 if fcb else 0) | (0x10 if fcv else 0), address)


def snd(address: int, ci: int, data: bytes = b"", fcb: bool = False) -> LongFrame:
    return LongFrame(0x73 if fcb else 0x53, address, ci, data)


def nke(address: int) -> ShortFrame:
    return ShortFrame(0x40, address)


def telegram_no(reply: Reply | None) -> int:
    return rsp(reply).data[0]


# -- addressing -------------------------------------------------------------------------------

def test_answers_own_primary_address_only() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle_bytes(D2_REQ_FCB1, 0.0) is not None
    assert s.handle(req(2), 1.0) is None
    assert s.handle(nke(2), 1.0) is None
    assert s.handle(nke(1), 1.0) == Reply(b"\xe5")


def test_254_answers_with_own_primary_address() -> None:
    s = Slave(FakeDevice(), primary_address=7)
    frame = rsp(s.handle(req(254), 0.0))
    assert frame.address == 7
    assert s.handle(nke(254), 0.0) == Reply(b"\xe5")


def test_255_is_executed_but_never_answered() -> None:
    device = FakeDevice()
    s = Slave(device, primary_address=1)
    assert s.handle(req(255), 0.0) is None
    assert s.handle(nke(255), 0.0) is None
    assert s.handle(snd(255, 0x51, b"\x01\x7a\x09"), 0.0) is None
    assert s.primary_address == 9  # the broadcast command was executed
    assert s.handle(snd(255, 0xBD), 0.0) is None
    assert s.baud == 9600
    assert any(e.kind is EventKind.EXECUTED_SILENTLY for e in s.trace)


def test_bad_checksum_gets_silence() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    bad = bytearray(D2_REQ_FCB1)
    bad[3] ^= 0x01
    assert s.handle_bytes(bytes(bad), 0.0) is None
    assert s.trace[-1].kind is EventKind.BAD_FRAME
    # the bus server path: the reader drops it, so the slave never sees it
    assert all(not isinstance(x, ShortFrame) for x in FrameReader().feed(bytes(bad)))


def test_frames_from_slaves_and_acks_are_ignored() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle(Ack(), 0.0) is None
    assert s.handle(ShortFrame(0x0B, 1), 0.0) is None  # a RSP_SKE of another slave
    assert s.handle(LongFrame(0x08, 1, 0x72, b"\x00" * 12), 0.0) is None


def test_req_ud1_and_req_ske() -> None:
    s = Slave(FakeDevice(), primary_address=3)
    assert s.handle(ShortFrame(0x5A, 3), 0.0) == Reply(b"\xe5")
    ske = s.handle(ShortFrame(0x49, 3), 0.0)
    assert ske is not None and decode_frame(ske.data) == ShortFrame(0x0B, 3)


# -- FCB ----------------------------------------------------------------------------------------

def test_fcb_next_repeat_and_wrap() -> None:
    s = Slave(FakeDevice(telegrams=3), primary_address=1)
    assert s.handle(nke(1), 0.0) == Reply(b"\xe5")
    first = rsp(s.handle_bytes(D2_REQ_FCB1, 1.0))
    assert first.data == bytes((0, 1))
    assert telegram_no(s.handle_bytes(D2_REQ_FCB0, 2.0)) == 1  # toggled: next
    again = rsp(s.handle_bytes(D2_REQ_FCB0, 3.0))  # unchanged: the answer was lost, repeat
    assert again.data == bytes((1, 3))  # same telegram, current values
    assert telegram_no(s.handle_bytes(D2_REQ_FCB1, 4.0)) == 2
    assert telegram_no(s.handle_bytes(D2_REQ_FCB0, 5.0)) == 0  # last one had no 1F: wrap


def test_snd_nke_resets_the_fcb_state() -> None:
    s = Slave(FakeDevice(telegrams=3), primary_address=1)
    s.handle_bytes(D2_REQ_FCB1, 0.0)
    assert telegram_no(s.handle_bytes(D2_REQ_FCB0, 1.0)) == 1
    s.handle(nke(1), 2.0)
    # after the reset the master starts with FCB=1 again, which would be a "repeat" otherwise
    assert telegram_no(s.handle_bytes(D2_REQ_FCB1, 3.0)) == 0
    s.handle_bytes(D2_REQ_FCB0, 4.0)
    s.handle(nke(255), 5.0)  # a broadcast link reset as well (libmbus scan start)
    assert telegram_no(s.handle_bytes(D2_REQ_FCB0, 6.0)) == 0


def test_fcv_zero_always_gives_the_first_telegram() -> None:
    s = Slave(FakeDevice(telegrams=2), primary_address=1)
    for t in range(4):
        assert telegram_no(s.handle(req(1, fcb=bool(t % 2), fcv=False), float(t))) == 0


def test_libmbus_single_reads_never_step_through_telegrams() -> None:
    # libmbus sends 10 5B A CS 16 for every single read (libmbus.md section 2)
    s = Slave(FakeDevice(telegrams=2), primary_address=1)
    for minute in range(5):
        assert telegram_no(s.handle_bytes(D2_REQ_FCB0, 60.0 * minute)) == 0


def test_libmbus_multi_reply_then_single_read() -> None:
    s = Slave(FakeDevice(telegrams=2), primary_address=1)
    s.handle(nke(253), 0.0)  # libmbus resets 253, not the primary address: not for us
    assert telegram_no(s.handle(req(1, fcb=True), 0.1)) == 0
    assert telegram_no(s.handle(req(1, fcb=False), 0.2)) == 1
    # the interop run's trap: a select in between, then 5B must give telegram 1 again
    assert s.handle_bytes(D3_SELECT, 1.0) == Reply(b"\xe5")
    assert telegram_no(s.handle(req(253, fcb=False), 1.1)) == 0


def test_repeat_window_expires() -> None:
    s = Slave(FakeDevice(telegrams=3), primary_address=1, repeat_window=10.0)
    s.handle(req(1, fcb=True), 0.0)
    assert telegram_no(s.handle(req(1, fcb=False), 5.0)) == 1
    assert telegram_no(s.handle(req(1, fcb=False), 9.0)) == 1  # repeat within the window
    assert telegram_no(s.handle(req(1, fcb=True), 30.0)) == 0  # forgotten: fresh read-out


def test_other_frame_between_requests_restarts_the_readout() -> None:
    s = Slave(FakeDevice(telegrams=3), primary_address=1)
    s.handle(req(1, fcb=True), 0.0)
    s.handle(req(1, fcb=False), 1.0)
    assert s.handle(ShortFrame(0x5A, 1), 2.0) == Reply(b"\xe5")
    assert telegram_no(s.handle(req(1, fcb=True), 3.0)) == 0


# -- selection ------------------------------------------------------------------------------------

def test_selection_then_read_via_253_answers_with_primary_address() -> None:
    s = Slave(FakeDevice(), primary_address=42)
    assert s.handle(req(253), 0.0) is None  # not selected yet
    assert s.handle_bytes(D3_SELECT, 0.0) == Reply(b"\xe5")
    assert s.selected
    frame = rsp(s.handle(req(253), 1.0))
    assert frame.address == 42


def test_wildcard_selection() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle_bytes(D4_WILDCARD, 0.0) == Reply(b"\xe5")
    # manufacturer wildcards per byte, medium mismatch
    assert s.handle(snd(253, 0x52, bytes.fromhex("20918314FFFF01FF")), 0.0) == Reply(b"\xe5")
    assert s.handle(snd(253, 0x52, bytes.fromhex("20918314FFFFFF04")), 0.0) is None
    # nibble wildcards: 1483912F matches 14839120, 1483913F does not
    assert s.handle(snd(253, 0x52, bytes.fromhex("2F918314FFFFFFFF")), 0.0) == Reply(b"\xe5")
    assert s.handle(snd(253, 0x52, bytes.fromhex("3F918314FFFFFFFF")), 0.0) is None
    assert s.handle(snd(253, 0x52, bytes.fromhex("FFFFFFFF2D2DFFFF")), 0.0) is None  # not KAM


def test_non_matching_selection_deselects() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    s.handle_bytes(D3_SELECT, 0.0)
    assert s.handle(snd(253, 0x52, bytes.fromhex("99999999FFFFFFFF")), 1.0) is None
    assert not s.selected
    assert s.handle(req(253), 2.0) is None


def test_nke_to_253_deselects() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle_bytes(D1_NKE_253, 0.0) is None  # not selected: not addressed
    s.handle_bytes(D3_SELECT, 0.0)
    assert s.handle_bytes(D1_NKE_253, 1.0) == Reply(b"\xe5")
    assert not s.selected
    assert s.handle(req(253), 2.0) is None


def test_ci_56_deselects() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    s.handle_bytes(D3_SELECT, 0.0)
    assert s.handle(snd(253, 0x56, bytes.fromhex("99999999FFFFFFFF")), 0.5) is None
    assert s.selected  # a deselection for someone else
    assert s.handle(snd(253, 0x56, D3_SELECT[7:15]), 1.0) == Reply(b"\xe5")
    assert not s.selected


def test_enhanced_selection_tells_equal_meter_numbers_apart() -> None:
    a = Slave(FakeDevice(ident=ID_382), primary_address=1)
    b = Slave(FakeDevice(ident=Identity(14839120, "KAM", 1, 2, fabrication=87654321)),
              primary_address=2)
    # plain selection: both answer (a collision on the bus)
    assert a.handle_bytes(D3_SELECT, 0.0) == b.handle_bytes(D3_SELECT, 0.0) == Reply(b"\xe5")
    # enhanced: only the one with fabrication number 12345678
    assert a.handle_bytes(D5_ENHANCED, 1.0) == Reply(b"\xe5")
    assert b.handle_bytes(D5_ENHANCED, 1.0) is None
    assert a.selected and not b.selected
    wild = snd(253, 0x52, D3_SELECT[7:15] + bytes.fromhex("0C78FFFFFF8F"))
    assert b.handle(wild, 2.0) == Reply(b"\xe5") and a.handle(wild, 2.0) is None
    nofab = Slave(FakeDevice(ident=Identity(14839120, "KAM", 1, 2)), primary_address=3)
    assert nofab.handle_bytes(D5_ENHANCED, 3.0) is None


def test_malformed_selection_is_no_match() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle(snd(253, 0x52, bytes.fromhex("209183")), 0.0) is None
    assert s.handle(snd(253, 0x52, D3_SELECT[7:15] + bytes.fromhex("0C7978563412")), 0.0) is None


# -- SND_UD, errors -------------------------------------------------------------------------------

def test_set_primary_address_acks_then_moves() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle_bytes(bytes.fromhex("68060668530151017A052516"), 0.0) == Reply(b"\xe5")
    assert s.primary_address == 5
    assert s.handle(req(1), 1.0) is None
    assert rsp(s.handle(req(5), 1.0)).address == 5


def test_refused_command_is_silent_and_reported_once_as_ci_70() -> None:
    device = FakeDevice()
    s = Slave(device, primary_address=1)
    assert s.handle(snd(1, 0x51, b"\xee\x00"), 0.0) is None
    err = s.handle(req(1), 1.0)
    assert err is not None and err.data == bytes.fromhex("6804046808017000791 6".replace(" ", ""))
    assert telegram_no(s.handle(req(1), 2.0)) == 0  # reported once, then data again
    assert s.handle(snd(1, 0x51, b"\xee\x01"), 3.0) is None
    assert s.handle(snd(1, 0x51, b"\x02\xfd\x3a\x00\x00"), 4.0) == Reply(b"\xe5")
    assert rsp(s.handle(req(1), 5.0)).ci == 0x78  # the later command succeeded: no stale error


def test_unknown_ci_gives_unimplemented_ci_error() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle(snd(1, 0xB1), 0.0) is None
    assert rsp(s.handle(req(1), 1.0)).data == bytes((APP_ERROR_UNIMPLEMENTED_CI,))
    assert s.handle(snd(1, 0x52, D3_SELECT[7:15]), 2.0) is None  # selection at a primary
    s.handle(nke(1), 3.0)  # a link reset drops a held error
    assert rsp(s.handle(req(1), 4.0)).ci == 0x78


def test_repeated_snd_ud_is_not_executed_twice() -> None:
    device = FakeDevice()
    s = Slave(device, primary_address=1)
    top_up = snd(1, 0x51, b"\x04\xfd\x01\x10\x00\x00\x00", fcb=True)
    assert s.handle(top_up, 0.0) == Reply(b"\xe5")
    assert s.handle(top_up, 1.0) == Reply(b"\xe5")  # our E5 was lost; master repeats
    assert len(device.commands) == 1
    toggled = snd(1, 0x51, top_up.data, fcb=False)
    assert s.handle(toggled, 2.0) == Reply(b"\xe5")
    assert len(device.commands) == 2
    assert s.handle(toggled, 100.0) == Reply(b"\xe5")  # long after: a new command
    assert len(device.commands) == 3


def test_application_reset_with_and_without_subcode() -> None:
    device = FakeDevice(telegrams=3)
    s = Slave(device, primary_address=1)
    s.handle(req(1, fcb=True), 0.0)
    s.handle(req(1, fcb=False), 1.0)
    assert s.handle_bytes(D8_RESET, 2.0) == Reply(b"\xe5")
    assert s.handle_bytes(D8_RESET_10, 3.0) == Reply(b"\xe5")
    assert device.resets == [None, 0x10]
    assert telegram_no(s.handle(req(1, fcb=False), 4.0)) == 0
    assert s.handle(snd(1, 0x50, b"\x10\x00"), 5.0) is None  # two subcode bytes


# -- baud -----------------------------------------------------------------------------------------

def test_baud_switch_acks_at_old_rate_then_switches() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.baud == 2400
    reply = s.handle_bytes(D7_BAUD_9600, 0.0)
    assert reply == Reply(b"\xe5", new_baud=9600)
    assert s.baud == 9600
    assert s.get_timer() == 60.0
    assert s.handle(req(1), 1.0) is not None  # a frame at the new rate confirms it
    assert s.get_timer() is None
    s.handle_timer(500.0)
    assert s.baud == 9600
    assert s.handle(snd(1, 0xB8), 2.0) == Reply(b"\xe5", new_baud=300)
    assert s.handle(snd(1, 0xB8, fcb=True), 3.0) == Reply(b"\xe5")  # already there


def test_baud_falls_back_when_master_never_follows() -> None:
    s = Slave(FakeDevice(), primary_address=1, baud_fallback=30.0)
    s.handle_bytes(D7_BAUD_9600, 0.0)
    s.handle_timer(29.0)
    assert s.baud == 9600
    s.handle_timer(30.0)
    assert s.baud == 2400 and s.get_timer() is None
    assert s.trace[-1].kind is EventKind.BAUD_FALLBACK


def test_unsupported_baud_is_refused() -> None:
    s = Slave(FakeDevice(), primary_address=1)
    assert s.handle(snd(1, 0xBC), 0.0) is None  # 4800: the module has 300/2400/9600
    assert s.baud == 2400
    assert rsp(s.handle(req(1), 1.0)).ci == 0x70


# -- configuration and helpers ---------------------------------------------------------------------

def test_state_round_trip() -> None:
    s = Slave(FakeDevice(), primary_address=17, baud=9600)
    state = s.to_state()
    assert state == {"primary_address": 17, "baud": 9600}
    t = Slave(FakeDevice())
    t.load_state(state)
    assert (t.primary_address, t.baud) == (17, 9600)
    with pytest.raises(EncodeError):
        t.load_state({"primary_address": 251, "baud": 2400})
    with pytest.raises(EncodeError):
        t.load_state({"baud": 2400})
    assert (t.primary_address, t.baud) == (17, 9600)


def test_constructor_and_identity_refuse_bad_input() -> None:
    with pytest.raises(EncodeError):
        Slave(FakeDevice(), primary_address=253)
    with pytest.raises(EncodeError):
        Slave(FakeDevice(), baud=4800)
    with pytest.raises(EncodeError):
        Identity(123456789, "KAM", 1, 2)
    with pytest.raises(EncodeError):
        Identity(1, "K4M", 1, 2)
    with pytest.raises(EncodeError):
        Identity(1, "KAM", 256, 2)
    assert manufacturer_code("KAM") == 0x2C2D
    assert ID_382.address_bytes() == bytes.fromhex("209183142D2C0102")


def test_core_module_does_no_io() -> None:
    tree = ast.parse(Path(slave_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "asyncio", "serial", "time", "random"}


def test_selections_of_other_meters_leave_our_readout_alone() -> None:
    s = Slave(FakeDevice(telegrams=3), primary_address=1)
    s.handle(req(1, fcb=True), 0.0)
    # a master searching the bus meanwhile (not us, and we were not selected)
    assert s.handle(snd(253, 0x52, bytes.fromhex("99999999FFFFFFFF")), 0.5) is None
    assert telegram_no(s.handle(req(1, fcb=False), 1.0)) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.floats(min_value=0, max_value=1e6))
def test_arbitrary_bytes_never_raise(data: bytes, now: float) -> None:
    s = Slave(FakeDevice(), primary_address=1)
    reply = s.handle_bytes(data, now)
    assert reply is None or isinstance(reply, Reply)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40))
def test_arbitrary_frames_never_raise(c: int, a: int, ci: int, data: bytes) -> None:
    s = Slave(FakeDevice(), primary_address=1)
    s.handle(ShortFrame(c, a), 0.0)
    s.handle(LongFrame(c, a, ci, data), 1.0)
    assert 0 <= s.primary_address <= 250
