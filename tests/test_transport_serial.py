"""The serial transport through pyserial URLs: loop:// (a line that echoes everything, like a
level converter that echoes the master) and socket:// to the project's gateway server."""

from __future__ import annotations

import pytest

from master_fakes import FakeMeter
from mbuskit.errors import TransportError
from mbuskit.master.driver import Master
from mbuskit.master.transaction import Outcome, address_of
from mbuskit.transport.serial import SerialTransport
from mbuskit.transport.server import serve_tcp


def _more(frame: object) -> bool:
    return False


async def test_loopback_echo_is_recognised_and_is_not_an_answer() -> None:
    transport = SerialTransport("loop://", baud=9600, latency=0.0)
    await transport.open()
    try:
        master = Master(transport, timeout=0.05, retries=0, more_follows=_more)
        assert not await master.ping(3)
        assert master.stats.echoes == 1 and master.stats.garbled == 0
        await transport.set_baud(300)
        assert transport.baud == 300
    finally:
        await transport.close()


async def test_socket_url_reaches_a_gateway() -> None:
    meters = [FakeMeter("12345678", primary=5)]
    server = await serve_tcp(meters, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = SerialTransport(f"socket://127.0.0.1:{port}", latency=0.05)
    await transport.open()
    try:
        master = Master(transport, more_follows=_more)
        frames = await master.read_frames(5)
        assert address_of(frames[0]) == meters[0].address
        answer = await master.raw(bytes.fromhex("1040054516"))
        assert answer.outcome is Outcome.ACK
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()


async def test_unknown_port_names_the_port() -> None:
    transport = SerialTransport("/dev/does-not-exist-mbus")
    with pytest.raises(TransportError, match="/dev/does-not-exist-mbus: cannot open"):
        await transport.open()
    with pytest.raises(TransportError, match="not open"):
        await transport.receive(0.01)
