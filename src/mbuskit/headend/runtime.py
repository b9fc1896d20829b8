"""Putting the head-end together: storage, readers, scheduler, bus leases, MQTT and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping

from .config import Config
from .scheduler import Reader, Scheduler
from .spool import Spool
from .storage import open_storage
from .storage.base import Storage, StorageError

log = logging.getLogger("mbuskit.headend")


def worker_id(config: Config) -> str:
    return f"{config.name}@{socket.gethostname()}:{os.getpid()}"


class Headend:
    def __init__(self, config: Config, *, readers: Mapping[str, Reader] | None = None,
                 storage: Storage | None = None, http: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.worker = worker_id(config)
        self.storage = storage or open_storage(config.storage.url, worker=self.worker)
        if readers is None:
            from .readers import MasterReader, transport_for

            readers = {b.name: MasterReader(transport_for(b), timeout=b.timeout, keys=config.keys)
                       for b in config.buses}
        self.readers = dict(readers)
        # the default spool sits beside the configured database; a storage passed in (tests,
        # embedding) gets one only when the configuration names it
        spool_dir = config.storage.spool if storage is not None else config.storage.spool_dir
        self.scheduler = Scheduler(config, self.readers, self.storage, clock=clock,
                                   spool=Spool(spool_dir) if spool_dir else None,
                                   max_queue=config.storage.max_queue)
        self.http = http
        self.mqtt: object | None = None
        self._server: object | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.url: str | None = None

    @property
    def leased(self) -> bool:
        return hasattr(self.storage, "acquire")

    async def start(self) -> None:
        s = self.scheduler
        if self.config.mqtt is not None:
            from .mqtt import MqttPublisher

            # before the scheduler starts: the catch-up reads at start are published too
            # (queued until the broker answers)
            # MQTT 3.1.1 does not tell a subscriber who published: the broker's ACL decides
            # who may command (docs/headend.md), so the audit trail says "mqtt"
            pub = MqttPublisher(self.config.mqtt, node=self.config.name,
                                meters=self.config.meters,
                                on_command=lambda m, c, a: s.command(m, c, a, origin="mqtt"))
            s.listeners.append(pub.publish_poll)
            s.state_listeners.append(pub.publish_availability)
            pub.start()
            self.mqtt = pub
        await s.start(buses=[] if self.leased else None)
        if self.leased:
            self._tasks.append(asyncio.create_task(self._lease_loop(), name="leases"))
        if self.http:
            await self._start_http()

    async def _start_http(self) -> None:
        import uvicorn

        from .http import create_app

        app = create_app(self.scheduler, token=self.config.http.token)
        cfg = uvicorn.Config(app, host=self.config.http.host, port=self.config.http.port,
                             log_level="warning", lifespan="off")

        class _Server(uvicorn.Server):
            # the head-end owns SIGINT/SIGTERM and stops the server itself
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        server = _Server(cfg)
        self._server = server
        # bind here, so that a port in use is a clear error instead of uvicorn's sys.exit
        host, port = self.config.http.host, self.config.http.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, _, _, _, address = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            except SystemExit as exc:  # uvicorn gives up with sys.exit on startup failures
                raise OSError(f"HTTP server on {host}:{port} failed to start") from exc

        task = asyncio.create_task(serve(), name="http")
        self._tasks.append(task)
        while not server.started:
            if task.done():
                raise task.exception() or OSError("HTTP server stopped")
            await asyncio.sleep(0.02)
        port = sock.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"

    async def _lease_loop(self) -> None:
        """Hold the leases of as many buses as this worker can get (storage_pg)."""
        store = self.storage
        period = self.config.storage.lease_seconds
        names = [b.name for b in self.config.buses]
        s = self.scheduler
        last_ok = time.monotonic()
        held: set[str] = set()
        while True:
            lost_contact: set[str] = set()
            try:
                got = await asyncio.to_thread(store.acquire, names, period)  # type: ignore[attr-defined]
                held, last_ok = set(got), time.monotonic()
            except StorageError as exc:
                # without the database we cannot renew: stop before our leases run out, so
                # the worker that takes over never polls a bus at the same time as us
                if time.monotonic() - last_ok > period * 0.6:
                    lost_contact, held = held, set()
                log.warning("lease renewal failed: %s", exc)
            for name in names:
                running = s.buses[name].owned and name in s._bus_tasks
                if name in held and not running:
                    log.info("bus %s: lease acquired by %s", name, self.worker)
                    s.start_bus(name)
                elif name not in held and running:
                    log.info("bus %s: lease lost or handed over", name)
                    await s.stop_bus(name)
                    if name not in lost_contact:
                        # stopped first, released second: never two pollers on one bus
                        with contextlib.suppress(StorageError):
                            await asyncio.to_thread(store.release, [name])  # type: ignore[attr-defined]
            await asyncio.sleep(period / 3)

    async def stop(self) -> None:
        for t in self._tasks:
            if t.get_name() == "leases":
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        await self.scheduler.stop()
        if self.leased:
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(self.storage.release,  # type: ignore[attr-defined]
                                        [b.name for b in self.config.buses], retire=True)
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)  # type: ignore[attr-defined]
        if self._server is not None:
            self._server.should_exit = True  # type: ignore[attr-defined]
        for t in self._tasks:
            if not t.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(t, timeout=5)
        for r in self.readers.values():
            close = getattr(r, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        self.storage.close()


__all__ = ["Headend", "worker_id"]
