"""The TCP gateway transport against the project's gateway server, and its failures."""

from __future__ import annotations

import asyncio
import socket

import pytest

from master_fakes import FakeMeter
from mbuskit.errors import LocalError, TransportError
from mbuskit.master.driver import Master
from mbuskit.master.transaction import address_of
from mbuskit.transport.server import serve_tcp
from mbuskit.transport.tcp import TcpTransport, parse_tcp_url


def _more(frame: object) -> bool:
    return False


def test_url_parsing() -> None:
    assert parse_tcp_url("tcp://10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert parse_tcp_url("gw.local:502") == ("gw.local", 502)
    for bad in ("udp://x:1", "tcp://host", "tcp://:5", "tcp://h:99999"):
        with pytest.raises(LocalError):
            parse_tcp_url(bad)


async def test_read_and_scan_through_a_gateway() -> None:
    meters = [FakeMeter("11111111", primary=1), FakeMeter("22222222", primary=2)]
    server = await serve_tcp(meters, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = TcpTransport.from_url(f"tcp://127.0.0.1:{port}")
    try:
        await transport.open()
        assert 0.0 < transport.latency < 1.0  # measured round trip + gateway allowance
        master = Master(transport, more_follows=_more)
        frames = await master.read_frames(2)
        assert address_of(frames[0]) == meters[1].address
        found = await master.scan_secondary()
        assert sorted(f.address or "" for f in found) == [x.address for x in meters]
        assert not await master.ping(100)
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_refused_connection_is_a_clear_transport_error() -> None:
    port = _free_port()
    transport = TcpTransport("127.0.0.1", port)
    with pytest.raises(TransportError, match=f"tcp://127.0.0.1:{port}: connection refused"):
        await transport.open()
    with pytest.raises(TransportError, match="not connected"):
        await transport.send(b"\xe5")


async def test_gateway_that_hangs_up_is_a_transport_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = TcpTransport("127.0.0.1", port, latency=0.0)
    try:
        await transport.open()
        assert transport.latency == 0.0
        master = Master(transport, more_follows=_more)
        with pytest.raises(TransportError, match="closed the connection"):
            await master.ping(1)
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
