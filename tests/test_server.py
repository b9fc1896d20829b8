from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
import serial

from mbuskit.codec import timing
from mbuskit.codec.link import Frame
from mbuskit.errors import MBusError, TransportError
from mbuskit.transport.server import Gateway, serve_serial, serve_tcp
from test_simbus import FakeReply, FakeSlave, req_ud2, select


async def _ask(port: int, request: bytes, *, wait: float = 1.0,
               expect: int | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await _read(reader, wait, expect)
    finally:
        writer.close()
        await writer.wait_closed()


async def _read(reader: asyncio.StreamReader, wait: float, expect: int | None) -> bytes:
    out = b""
    deadline = time.monotonic() + wait
    while expect is None or len(out) < expect:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    return out


def _port(server: asyncio.Server) -> int:
    port = server.sockets[0].getsockname()[1]
    assert isinstance(port, int)
    return port


async def test_tcp_gateway_answers_like_the_bus() -> None:
    slaves = [FakeSlave(1, 12345678), FakeSlave(2, 12349999)]
    server = await serve_tcp(slaves, "127.0.0.1", 0)
    port = _port(server)
    try:
        got = await _ask(port, req_ud2(2), expect=len(slaves[1].telegram()))
        assert got == slaves[1].telegram()
        assert await _ask(port, req_ud2(9), wait=0.2) == b""
        # a wildcard select both match: their E5s merge into one
        assert await _ask(port, select("1234FFFF"), wait=0.3) == b"\xe5"
    finally:
        server.close()
        await server.wait_closed()


async def test_garbage_and_split_frames_do_not_break_the_gateway() -> None:
    slave = FakeSlave(1, 12345678)
    gateway = Gateway([slave], name="g")
    server = await serve_tcp(gateway, "127.0.0.1", 0)
    port = _port(server)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        bad = bytearray(req_ud2(1))
        bad[3] ^= 0xFF  # bad checksum: silence
        writer.write(b"\x00\xff\x68\x02" + bytes(bad))
        await writer.drain()
        assert await _read(reader, 0.2, None) == b""
        frame = req_ud2(1)
        writer.write(frame[:2])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frame[2:])
        await writer.drain()
        assert await _read(reader, 1.0, len(slave.telegram())) == slave.telegram()
        writer.close()
        await writer.wait_closed()
        assert gateway.stats.skipped >= 1
        assert gateway.stats.answers == 1
    finally:
        server.close()
        await server.wait_closed()


class _Exploding(FakeSlave):
    def handle(self, frame: Frame, now: float) -> FakeReply | None:
        if getattr(frame, "address", None) == self.address:
            raise RuntimeError("bug in a slave")
        return None


async def test_a_failing_slave_or_a_dropped_master_leaves_the_server_up(
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = Gateway([_Exploding(1, 1)], name="boom")
    server = await serve_tcp(gateway, "127.0.0.1", 0)
    port = _port(server)
    try:
        good = FakeSlave(2, 12345678)
        gateway.segment.add(good)
        with caplog.at_level(logging.INFO, logger="mbuskit.server"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(req_ud2(1))
            await writer.drain()
            assert await _read(reader, 0.3, None) == b""  # silence, the connection stays
            writer.write(req_ud2(2))
            await writer.drain()
            assert await _read(reader, 1.0, len(good.telegram())) == good.telegram()
            writer.close()
            await writer.wait_closed()
            # a master that connects and resets the connection
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x10")
            await writer.drain()
            writer.transport.abort()
            await asyncio.sleep(0.1)
        assert gateway.stats.errors == 1
        assert "a slave failed" in caplog.text
        assert gateway.stats.connections == 2
        assert await _ask(port, req_ud2(2), expect=len(good.telegram())) == good.telegram()
    finally:
        server.close()
        await server.wait_closed()


async def test_realtime_answers_take_wire_time() -> None:
    slave = FakeSlave(1, 12345678, baud=2400)
    server = await serve_tcp([slave], "127.0.0.1", 0, realtime=True, baud=2400)
    port = _port(server)
    try:
        start = time.monotonic()
        got = await _ask(port, req_ud2(1), wait=2.0, expect=len(slave.telegram()))
        took = time.monotonic() - start
        assert got == slave.telegram()
        wire = timing.exchange_time(5, len(got), 2400)
        assert took >= wire * 0.95
        assert took < wire + 0.5
    finally:
        server.close()
        await server.wait_closed()


async def test_several_gateways_in_one_process_keep_their_own_slaves() -> None:
    servers = [await serve_tcp([FakeSlave(1, 10000000 + g)], "127.0.0.1", 0) for g in range(3)]
    try:
        answers = await asyncio.gather(*(
            _ask(_port(s), req_ud2(1), expect=len(FakeSlave(1, 1).telegram())) for s in servers))
        idents = {a[7:11] for a in answers}
        assert len(idents) == 3
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()


async def test_bind_failure_is_a_transport_error() -> None:
    server = await serve_tcp([], "127.0.0.1", 0)
    try:
        with pytest.raises(TransportError):
            await serve_tcp([], "127.0.0.1", _port(server))
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises(MBusError):
        Gateway([], baud=1000)


def _serial_exchange(path: str, baud: int, request: bytes, expect: int) -> bytes:
    with serial.Serial(path, baudrate=baud, parity=serial.PARITY_EVEN, timeout=0.3) as port:
        port.write(request)
        return bytes(port.read(expect))


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
async def test_pty_serves_the_bus_and_honours_the_line_rate() -> None:
    slave = FakeSlave(5, 12345678, baud=2400)
    server = await serve_serial([slave], "pty", baud=2400)
    try:
        assert server.path.startswith("/dev/")
        size = len(slave.telegram())
        got = await asyncio.to_thread(_serial_exchange, server.path, 2400, req_ud2(5), size)
        assert got == slave.telegram()
        # a master at 9600 is noise to a slave at 2400
        got = await asyncio.to_thread(_serial_exchange, server.path, 9600, req_ud2(5), size)
        assert got == b""
    finally:
        await server.stop()


async def test_missing_serial_device_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="cannot open"):
        await serve_serial([], "/dev/does-not-exist-mbus")


async def test_a_long_pause_ends_a_partial_frame() -> None:
    slave = FakeSlave(1, 12345678, baud=9600)
    gateway = Gateway([slave], baud=9600)
    server = await serve_tcp(gateway, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        writer.write(b"\x68\x40\x40\x68\x01")  # a long frame that never comes
        await writer.drain()
        await asyncio.sleep(gateway.idle_gap() + 0.1)
        writer.write(req_ud2(1))
        await writer.drain()
        assert await _read(reader, 1.0, len(slave.telegram())) == slave.telegram()
        assert gateway.stats.skipped >= 1
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
