"""The master: transactions driven by hand, the async driver over scripted and simulated buses."""

from __future__ import annotations

from datetime import datetime

import pytest

from master_fakes import FakeMeter, ScriptedTransport
from mbuskit.codec import timing
from mbuskit.codec.link import Ack, LongFrame, ShortFrame, decode_frame
from mbuskit.errors import BusTimeout, LocalError, MBusError
from mbuskit.master import transaction as m
from mbuskit.master.driver import Master
from mbuskit.transport.simbus import SimBus

ACK = Ack().encode()


def _answer(data: bytes) -> m.Answer:
    from mbuskit.codec.link import FrameReader

    return m.Answer.classify(FrameReader().feed(data), data)


def _more(frame: LongFrame) -> bool:
    return frame.data[-1:] == b"\x1f"


# -- frames and payloads ------------------------------------------------------------------------


def test_select_frame_bytes_match_the_standard_layout() -> None:
    # ID LSB first, manufacturer in wire order, version, medium (m-bus.com fig. 29)
    frame = m.select_frame("148391202D2C0102")
    assert frame.encode().hex(" ") == "68 0b 0b 68 53 fd 52 20 91 83 14 2d 2c 01 02 46 16"
    enhanced = m.select_frame("12345678", "0000001F")
    assert enhanced.data[8:] == bytes.fromhex("0c78 1f000000")
    assert enhanced.data[4:8] == b"\xff" * 4  # a short mask is padded with wildcards


@pytest.mark.parametrize("bad", ["1234567A2D2C0102", "XYZ", "148391202D2C010203"])
def test_bad_masks_are_refused(bad: str) -> None:
    with pytest.raises(LocalError):
        m.normalize_mask(bad)


def test_payloads_of_the_standard_writes() -> None:
    assert m.set_address_payload(10) == bytes.fromhex("017a0a")
    assert m.set_id_payload("12345678") == bytes.fromhex("0c79 78563412")
    # FLOWIQ TD example: 0A 2D 82 09 = 2004-09-02 13:10
    assert m.type_f(datetime(2004, 9, 2, 13, 10)) == bytes.fromhex("0a2d8209")
    assert m.set_time_payload(datetime(2004, 9, 2, 13, 10)) == bytes.fromhex("046d0a2d8209")
    for bad in (251, 253, -1):
        with pytest.raises(LocalError):
            m.set_address_payload(bad)
    with pytest.raises(LocalError):
        m.set_id_payload("1234")


def test_address_of_reads_the_long_header() -> None:
    meter = FakeMeter("14839120")
    frame = decode_frame(meter.telegram(0))
    assert isinstance(frame, LongFrame)
    assert m.address_of(frame) == "148391202D2C0102"
    assert m.matches("148391202D2C0102", "1483FFFF")
    assert not m.matches("148391202D2C0102", "1484FFFF")


# -- transactions driven by hand -----------------------------------------------------------------


def test_ping_retries_noise_and_reports_a_collision() -> None:
    t = m.ping(5, retries=2)
    request = next(t)
    assert request.encode() == bytes.fromhex("1040054516")
    assert t.send(_answer(b"\xe4")) is request  # noise: the same request again
    with pytest.raises(StopIteration) as stop:
        t.send(_answer(ACK))
    assert stop.value.value is True

    t = m.ping(5, retries=1)
    next(t)
    t.send(_answer(b"\x00\x13"))
    with pytest.raises(m.CollisionError):
        t.send(_answer(b"\x00\x13"))


def test_read_toggles_fcb_per_telegram_and_repeats_it_after_a_loss() -> None:
    meter = FakeMeter("00000001", telegrams=2)
    fcb = m.FcbState()
    t = m.read(1, fcb, retries=2, more_follows=_more)
    first = next(t)
    assert isinstance(first.frame, ShortFrame) and first.frame.fcb and first.frame.fcv
    again = t.send(m.Answer(m.Outcome.SILENT))
    assert again.frame == first.frame  # lost answer: same FCB, the meter repeats
    second = t.send(_answer(meter.telegram(0)))
    assert isinstance(second.frame, ShortFrame) and not second.frame.fcb
    with pytest.raises(StopIteration) as stop:
        t.send(_answer(meter.telegram(1)))
    assert [f.data[8] for f in stop.value.value] == [0, 1]  # access numbers 0 and 1
    assert fcb.next(1) is True  # toggled twice


def test_read_gives_up_with_a_timeout_naming_the_address() -> None:
    t = m.read(7, m.FcbState(), retries=1, more_follows=_more)
    next(t)
    t.send(m.Answer(m.Outcome.SILENT))
    with pytest.raises(BusTimeout, match="primary address 7"):
        t.send(m.Answer(m.Outcome.SILENT))


def test_broadcast_command_waits_for_nothing() -> None:
    t = m.command(255, 0x51, b"\x01\x7a\x05", m.FcbState(), retries=2)
    request = next(t)
    assert request.expect is m.Expect.NOTHING
    with pytest.raises(StopIteration):
        t.send(m.Answer(m.Outcome.SILENT))


def test_out_of_range_addresses_are_local_errors() -> None:
    for bad in (251, 256, -1):
        with pytest.raises(LocalError, match="out of range"):
            next(m.ping(bad, retries=0))


# -- the driver --------------------------------------------------------------------------------


async def test_timeout_is_the_answer_window_plus_latency_unless_overridden() -> None:
    transport = ScriptedTransport([], baud=2400, latency=0.03)
    master = Master(transport)
    assert master.timeout == pytest.approx(330 / 2400 + 0.05 + 0.03)
    assert not await master.ping(3)
    assert transport.timeouts[0] == pytest.approx(master.timeout)
    fixed = Master(ScriptedTransport([], baud=300), timeout=2.5)
    assert fixed.timeout == 2.5
    with pytest.raises(LocalError):
        Master(transport, timeout=0)


async def test_echo_of_our_own_frame_is_dropped() -> None:
    transport = ScriptedTransport([ACK, FakeMeter("12345678").telegram(0)], echo=True)
    master = Master(transport, more_follows=_more)
    assert await master.ping(0)
    frames = await master.read_frames(0)
    assert m.address_of(frames[0]) == "123456782D2C0102"
    assert master.stats.echoes == 2
    assert master.stats.garbled == 0


async def test_two_answers_or_a_bad_checksum_are_garbled() -> None:
    good = FakeMeter("12345678").telegram(0)
    bad = good[:-2] + bytes(((good[-2] + 1) & 0xFF,)) + good[-1:]
    transport = ScriptedTransport([ACK + ACK, bad, bad, bad])
    master = Master(transport, retries=0, more_follows=_more)
    answer = await master.exchange(m.Request(m.snd_nke(1), m.Expect.ACK, 1))
    assert answer.outcome is m.Outcome.GARBLED
    master.retries = 2
    with pytest.raises(m.CollisionError, match="primary address 1"):
        await master.read_frames(1)
    assert len(transport.sent) == 4  # one exchange, then the read sent three times


async def test_a_truncated_frame_is_garbled_not_a_hang() -> None:
    good = FakeMeter("12345678").telegram(0)
    transport = ScriptedTransport([good[:20]])
    master = Master(transport, retries=0, more_follows=_more)
    answer = await master.exchange(m.Request(m.req_ud2(1, fcb=True), m.Expect.DATA, 1))
    assert answer.outcome is m.Outcome.GARBLED
    # waited for the first byte, then only for what the length byte said was missing
    missing = len(good) - 20
    assert transport.timeouts[1] < timing.frame_time(missing + 10, 2400)


# -- over the simulated bus ---------------------------------------------------------------------


def _bus(*meters: FakeMeter, baud: int = 2400) -> tuple[SimBus, Master]:
    bus = SimBus(list(meters), baud=baud)
    return bus, Master(bus, more_follows=_more)


async def test_read_by_primary_secondary_and_enhanced_address() -> None:
    a = FakeMeter("11111111", primary=1, fabrication="70000001", energy=11)
    b = FakeMeter("22222222", primary=2, fabrication="70000002", energy=22, telegrams=3)
    c = FakeMeter("22222222", primary=3, fabrication="70000003", energy=33)
    _, master = _bus(a, b, c)
    frames = await master.read_frames(1)
    assert [m.address_of(f) for f in frames] == [a.address]
    frames = await master.read_frames("2222222",  fabrication="70000002")
    assert len(frames) == 3  # every telegram of the multi-telegram answer
    assert {f.data[20:24] for f in frames} == {(22).to_bytes(4, "little")}
    with pytest.raises(m.CollisionError):
        await master.read_frames("22222222")  # b and c share the meter number
    frames = await master.read_frames("22222222", fabrication="70000003")
    assert m.fabrication_of(frames[0]) == "70000003"
    with pytest.raises(BusTimeout, match="33333333"):
        await master.select("33333333")


async def test_writes_change_the_meter() -> None:
    meter = FakeMeter("12345678", primary=0)
    _, master = _bus(meter)
    await master.set_primary_address(0, 17)
    assert meter.primary == 17
    await master.set_meter_number(17, "87654321")
    assert meter.ident == "87654321"
    await master.set_time(17, datetime(2026, 1, 2, 3, 4))
    assert meter.log[-1] == m.snd_ud(17, 0x51, bytes.fromhex("046d") +
                                     m.type_f(datetime(2026, 1, 2, 3, 4)),
                                     fcb=False).encode()
    other = FakeMeter("11111111", primary=5)
    _, master = _bus(meter, other)
    with pytest.raises(LocalError, match="already in use"):
        await master.set_primary_address(17, 5)
    assert meter.primary == 17


async def test_baud_switch_is_acknowledged_at_the_old_rate_then_followed() -> None:
    meter = FakeMeter("12345678", primary=4)
    bus, master = _bus(meter)
    await master.switch_baud(4, 9600)
    assert bus.baud == 9600 and meter.baud == 2400  # our fake does not move; the E5 came at 2400
    with pytest.raises(LocalError):
        await master.switch_baud(4, 1234)


async def test_raw_sends_a_frame_and_returns_the_answer() -> None:
    meter = FakeMeter("12345678", primary=9)
    _, master = _bus(meter)
    answer = await master.raw(bytes.fromhex("105b096416"))  # REQ_UD2 (C=5B) to 9
    assert answer.outcome is m.Outcome.FRAME
    with pytest.raises(MBusError):
        await master.raw(bytes.fromhex("105b096516"))  # wrong checksum
    with pytest.raises(LocalError):
        await master.raw(ACK)
