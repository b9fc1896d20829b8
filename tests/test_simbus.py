from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbuskit.codec import timing
from mbuskit.codec.link import Ack, Frame, FrameReader, LongFrame, ShortFrame, decode_frame
from mbuskit.errors import LocalError, MBusError, TransportError
from mbuskit.transport.simbus import Noise, Segment, SimBus, wired_and


@dataclass(frozen=True)
class FakeReply:
    data: bytes
    new_baud: int | None = None


@dataclass
class FakeSlave:
    """A minimal slave: primary address, REQ_UD2, SND_NKE, selection by ID, baud switch.

    Enough of EN 13757-2/-3 to exercise the bus; the real one is mbuskit.slave.
    """

    address: int
    ident: int  # 8 BCD digits
    baud: int = 2400
    selected: bool = False
    heard: list[tuple[Frame, float]] = field(default_factory=list)

    def _mine(self, address: int) -> bool:
        return address == self.address or (address == 253 and self.selected) or address == 254

    def handle(self, frame: Frame, now: float) -> FakeReply | None:
        self.heard.append((frame, now))
        if isinstance(frame, ShortFrame):
            if frame.control == 0x40 and self._mine(frame.address):
                if frame.address == 253:
                    self.selected = False
                return FakeReply(b"\xe5")
            if frame.control in (0x5B, 0x7B) and self._mine(frame.address):
                return FakeReply(self.telegram())
            return None
        if isinstance(frame, LongFrame):
            if frame.ci == 0x52 and frame.address == 253:
                self.selected = _matches(frame.data[:4], self.ident)
                return FakeReply(b"\xe5") if self.selected else None
            new = timing.baud_of_ci(frame.ci)
            if new is not None and self._mine(frame.address):
                self.baud = new
                return FakeReply(b"\xe5", new_baud=new)
        return None

    def telegram(self) -> bytes:
        ident = int(str(self.ident), 16).to_bytes(4, "little")
        header = ident + b"\x2d\x2c\x01\x02\x00\x00\x00\x00"
        return LongFrame(0x08, self.address, 0x72, header + b"\x04\x06\x10\x00\x00\x00").encode()


def _matches(mask: bytes, ident: int) -> bool:
    digits = f"{ident:08d}"
    want = "".join(f"{b:02X}" for b in reversed(mask))
    return all(w in ("F", d) for w, d in zip(want, digits, strict=True))


def req_ud2(address: int) -> bytes:
    return ShortFrame(0x5B, address).encode()


def select(ident_mask: str) -> bytes:
    data = bytes.fromhex(ident_mask)[::-1] + b"\xff\xff\xff\xff"
    return LongFrame(0x73, 253, 0x52, data).encode()


async def test_single_slave_answers_and_time_is_accounted() -> None:
    slave = FakeSlave(1, 12345678)
    bus = SimBus([slave], baud=2400)
    await bus.send(req_ud2(1))
    got = await bus.receive(timeout=0.5)
    assert got == slave.telegram()
    frame = decode_frame(got)
    assert isinstance(frame, LongFrame) and frame.address == 1
    expected = timing.exchange_time(5, len(got), 2400)
    assert bus.bus_seconds == pytest.approx(expected)
    assert bus.bus_seconds_by_baud == {2400: pytest.approx(expected)}
    # the slave was given the time the master's last stop bit ended
    assert slave.heard[0][1] == pytest.approx(timing.frame_time(5, 2400))


async def test_nobody_answers_costs_the_whole_timeout() -> None:
    bus = SimBus([FakeSlave(1, 12345678, baud=9600)], baud=9600)
    await bus.send(req_ud2(7))
    assert await bus.receive(timeout=0.2) == b""
    assert bus.bus_seconds == pytest.approx(timing.frame_time(5, 9600) + 0.2)


async def test_answer_after_the_masters_timeout_is_missed_then_arrives_late() -> None:
    bus = SimBus([FakeSlave(1, 12345678, baud=300)], baud=300, answer_bits=330)
    await bus.send(req_ud2(1))
    assert await bus.receive(timeout=0.5) == b""  # 330 bits at 300 baud = 1.1 s
    late = await bus.receive(timeout=2.0)
    assert late == FakeSlave(1, 12345678).telegram()
    assert bus.bus_seconds == pytest.approx(timing.exchange_time(5, len(late), 300, 330))


async def test_identical_acks_look_like_one() -> None:
    slaves = [FakeSlave(1, 12345678), FakeSlave(2, 12349999)]
    bus = SimBus(slaves)
    await bus.send(select("1234FFFF"))
    assert await bus.receive(0.3) == b"\xe5"
    assert all(s.selected for s in slaves)
    assert bus.collisions == 1


async def test_different_long_frames_collide_into_garbage() -> None:
    slaves = [FakeSlave(1, 12345678), FakeSlave(2, 87654321)]
    bus = SimBus(slaves)
    await bus.send(req_ud2(254))  # test broadcast: everybody answers
    got = await bus.receive(0.3)
    a, b = (s.telegram() for s in slaves)
    assert got == bytes(x & y for x, y in zip(a, b, strict=True))
    reader = FrameReader()
    assert not any(isinstance(item, LongFrame) for item in reader.feed(got))


async def test_skewed_answers_arrive_one_after_another() -> None:
    slaves = [FakeSlave(1, 12345678), FakeSlave(2, 12349999)]
    bus = SimBus(slaves, collisions="skew")
    await bus.send(select("1234FFFF"))
    assert await bus.receive(0.3) == b"\xe5\xe5"  # not one E5: the master sees a collision
    await bus.send(req_ud2(253))
    a, b = (s.telegram() for s in slaves)
    assert await bus.receive(0.3) == a + b
    with pytest.raises(MBusError, match="collisions must be one of and, skew"):
        SimBus(slaves, collisions="or")


def test_wired_and_keeps_the_longer_tail() -> None:
    assert wired_and([b"\xe5", b"\x68\x03\x03\x68"]) == bytes([0xE5 & 0x68, 3, 3, 0x68])
    assert wired_and([b"\xe5", b"\xe5", b"\xe5"]) == b"\xe5"
    assert wired_and([b"\xf0\xff", b"\x0f"]) == b"\x00\xff"
    assert wired_and([]) == b""


async def test_baud_switch_ack_at_old_rate_then_new_rate() -> None:
    slave = FakeSlave(1, 12345678)
    bus = SimBus([slave], baud=2400)
    await bus.send(LongFrame(0x53, 1, 0xBD).encode())  # CI BD = 9600
    assert await bus.receive(0.3) == b"\xe5"
    assert slave.baud == 9600
    # still at 2400: the slave hears noise and stays silent
    await bus.send(req_ud2(1))
    assert await bus.receive(0.3) == b""
    await bus.set_baud(9600)
    await bus.send(req_ud2(1))
    assert (await bus.receive(0.3)).startswith(b"\x68")
    assert set(bus.bus_seconds_by_baud) == {2400, 9600}
    assert sum(bus.bus_seconds_by_baud.values()) == pytest.approx(bus.bus_seconds)


async def test_wrong_rate_bytes_break_a_partial_frame() -> None:
    slave = FakeSlave(1, 12345678)
    bus = SimBus([slave], baud=2400)
    frame = req_ud2(1)
    await bus.send(frame[:3])
    await bus.set_baud(9600)
    await bus.send(b"\x00")
    await bus.set_baud(2400)
    await bus.send(frame[3:])
    assert await bus.receive(0.3) == b""
    assert slave.heard == []


async def test_frame_split_over_two_sends_is_heard() -> None:
    slave = FakeSlave(1, 12345678)
    bus = SimBus([slave])
    frame = req_ud2(1)
    await bus.send(frame[:2])
    await bus.send(frame[2:])
    assert await bus.receive(0.3) == slave.telegram()


async def test_noise_is_deterministic_by_seed_and_corrupts() -> None:
    async def run(seed: int) -> list[bytes]:
        bus = SimBus([FakeSlave(1, 12345678)], noise=Noise.one_in(200, drop_one_in=300),
                     seed=seed)
        out = []
        for _ in range(30):
            await bus.send(req_ud2(1))
            out.append(await bus.receive(0.3))
        return out

    first, again, other = await run(1), await run(1), await run(2)
    assert first == again
    assert first != other
    good = FakeSlave(1, 12345678).telegram()
    assert any(r == good for r in first)
    assert any(r != good for r in first)  # some requests or answers were hit


async def test_noise_float_is_a_bit_error_rate() -> None:
    bus = SimBus([FakeSlave(1, 12345678)], noise=0.5, seed=3)
    assert bus.noise.bit_error_rate == 0.5
    await bus.send(req_ud2(1))
    assert await bus.receive(0.3) != FakeSlave(1, 12345678).telegram()


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_bad_noise_is_refused(bad: float) -> None:
    with pytest.raises(LocalError):
        Noise(bit_error_rate=bad)
    with pytest.raises(LocalError):
        Noise(drop_rate=bad)
    with pytest.raises(LocalError):
        Noise.one_in(0)


def test_bad_options_are_mbus_errors() -> None:
    with pytest.raises(MBusError):
        SimBus([], baud=1234)
    with pytest.raises(MBusError):
        SimBus([], answer_bits=400)


async def test_closed_port_raises_and_drain_drops_input() -> None:
    bus = SimBus([FakeSlave(1, 12345678)])
    await bus.send(req_ud2(1))
    await bus.drain_input()
    assert await bus.receive(0.1) == b""
    await bus.close()
    with pytest.raises(TransportError):
        await bus.send(req_ud2(1))
    await bus.open()
    await bus.send(req_ud2(1))
    assert await bus.receive(0.3) != b""
    with pytest.raises(LocalError):
        await bus.receive(-1)
    with pytest.raises(LocalError):
        bus.idle(-1)


async def test_idle_advances_the_clock_that_slaves_see() -> None:
    slave = FakeSlave(1, 12345678)
    bus = SimBus([slave], start=1000.0)
    bus.idle(60)
    await bus.send(req_ud2(1))
    assert slave.heard[0][1] == pytest.approx(1060 + timing.frame_time(5, 2400))
    assert bus.bus_seconds == pytest.approx(60 + timing.frame_time(5, 2400))


def test_segment_garbage_is_skipped_and_reported() -> None:
    slave = FakeSlave(1, 12345678)
    seg = Segment([slave])
    out = seg.transmit(b"\x00\x01" + req_ud2(1), 2400, 0.0)
    assert len(out) == 1 and out[0].answered == 1
    assert seg.skipped and seg.skipped[0].data == b"\x00\x01"
    assert isinstance(decode_frame(out[0].reply), LongFrame)
    # a frame with a bad checksum gets silence
    bad = bytearray(req_ud2(1))
    bad[3] ^= 1
    assert seg.transmit(bytes(bad), 2400, 0.0) == []
    assert seg.transmit(Ack().encode(), 2400, 0.0)[0].answered == 0


@dataclass
class TimedSlave(FakeSlave):
    """Falls back to 2400 baud when its timer is due (as mbuskit.slave does after a switch)."""

    deadline: float | None = None
    fired: list[float] = field(default_factory=list)

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.deadline = None
        self.baud = 2400


async def test_timers_of_slaves_at_another_rate_still_run() -> None:
    slave = TimedSlave(1, 12345678, baud=9600, deadline=10.0)
    bus = SimBus([slave], baud=2400)
    await bus.send(req_ud2(1))
    assert await bus.receive(0.3) == b""  # before the deadline the slave is at 9600
    bus.idle(10.0)
    await bus.send(req_ud2(1))
    assert slave.fired and slave.fired[0] >= 10.0
    assert await bus.receive(0.3) == slave.telegram()


class _Device:
    """The smallest mbuskit.slave.machine.Device: an identity and one telegram with one record."""

    def __init__(self, ident: int) -> None:
        from mbuskit.slave.machine import Identity

        self._identity = Identity(ident, "KAM", 1, 2)

    def identity(self) -> Any:
        return self._identity

    def respond(self, now: float, index: int) -> Any:
        from mbuskit.slave.machine import Response

        header = self._identity.address_bytes() + b"\x00\x00\x00\x00"
        return Response(0x72, header + b"\x04\x06" + int(now).to_bytes(4, "little"))

    def command(self, ci: int, data: bytes, now: float) -> Any:
        from mbuskit.slave.machine import refused

        return refused("no commands")

    def reset(self, subcode: int | None, now: float) -> Any:
        from mbuskit.slave.machine import ACCEPTED

        return ACCEPTED


async def test_real_slaves_on_the_bus_collide_and_switch_baud() -> None:
    from mbuskit.slave.machine import Slave

    slaves = [Slave(_Device(12345678), primary_address=1),
              Slave(_Device(12349999), primary_address=2)]
    bus = SimBus(slaves, start=100.0)
    # both match the wildcard: one E5, then their answers to 253 collide into garbage
    await bus.send(select("1234FFFF"))
    assert await bus.receive(0.3) == b"\xe5"
    await bus.send(req_ud2(253))
    garbage = await bus.receive(0.3)
    assert garbage and not any(isinstance(f, LongFrame) for f in FrameReader().feed(garbage))
    # a narrower mask selects one; its answer decodes and carries the bus clock
    await bus.send(select("12345678"))
    assert await bus.receive(0.3) == b"\xe5"
    await bus.send(req_ud2(253))
    frame = decode_frame(await bus.receive(0.3))
    assert isinstance(frame, LongFrame) and frame.address == 1
    assert int.from_bytes(frame.data[-4:], "little") == int(bus.now)
    # baud switch: E5 at 2400, then only 9600 reaches slave 1; slave 2 stays at 2400
    await bus.send(LongFrame(0x53, 1, 0xBD).encode())
    assert await bus.receive(0.3) == b"\xe5"
    await bus.send(req_ud2(1))
    assert await bus.receive(0.3) == b""
    await bus.send(req_ud2(2))
    assert decode_frame(await bus.receive(0.3)) is not None
    await bus.set_baud(9600)
    await bus.send(req_ud2(1))
    assert decode_frame(await bus.receive(0.3)) is not None


async def test_a_frame_to_another_slave_still_confirms_a_baud_switch() -> None:
    from mbuskit.slave.machine import Slave

    one, two = (Slave(_Device(12345678), primary_address=1),
                Slave(_Device(12349999), primary_address=2))
    bus = SimBus([one, two])
    for address in (1, 2):
        await bus.send(LongFrame(0x53, address, 0xBD).encode())
        assert await bus.receive(0.3) == b"\xe5"
    await bus.set_baud(9600)
    await bus.send(req_ud2(2))  # heard by slave 1 at its new rate: its switch is confirmed
    assert await bus.receive(0.3)
    assert one.get_timer() is None
    bus.idle(120)
    await bus.send(req_ud2(1))
    assert await bus.receive(0.3)
    assert one.baud == two.baud == 9600
    # without that frame, the fall-back timer brings a slave back to 2400
    three = Slave(_Device(11111111), primary_address=3)
    bus3 = SimBus([three])
    await bus3.send(LongFrame(0x53, 3, 0xBD).encode())
    assert await bus3.receive(0.3) == b"\xe5"
    bus3.idle(120)
    await bus3.send(req_ud2(3))
    assert await bus3.receive(0.3)  # at 2400 again
    assert three.baud == 2400


async def test_simbus_is_a_transport() -> None:
    from mbuskit.transport.base import Transport

    port: Transport = SimBus([FakeSlave(1, 12345678)], baud=9600)  # checked by mypy --strict
    await port.open()
    assert port.baud == 9600
    await port.send(req_ud2(1))
    assert await port.receive(0.2) == b""  # the slave listens at 2400
    await port.close()


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=8))
def test_any_bytes_from_the_master_never_raise(chunks: list[bytes]) -> None:
    from mbuskit.slave.machine import Slave

    fake = FakeSlave(3, 55555555)
    slaves: list[Any] = [Slave(_Device(12345678), primary_address=1),
                         Slave(_Device(12349999), primary_address=2), fake]

    async def run() -> None:
        bus = SimBus(slaves, noise=Noise.one_in(500), seed=len(chunks))
        for chunk in chunks:
            await bus.send(chunk)
            await bus.receive(0.05)
        # after any garbage and a pause, a clean frame is answered
        bus.noise = Noise()
        bus.idle(1.0)
        await bus.send(req_ud2(3))
        assert await bus.receive(0.3) == fake.telegram()

    asyncio.run(run())


async def test_a_pause_inside_a_frame_breaks_it() -> None:
    slave = FakeSlave(1, 12345678)
    bus = SimBus([slave])
    frame = req_ud2(1)
    await bus.send(b"\x68\x20\x20\x68")  # the start of a long frame that never comes
    assert await bus.receive(0.2) == b""
    await bus.send(frame)  # after the idle time the slave listens afresh
    assert await bus.receive(0.3) == slave.telegram()
    assert any("idle" in s.reason for s in bus.segment.skipped)
