"""The head-end's HTTP API (Starlette), Prometheus metrics and the web page.

Reads are open to whoever can reach the port, which is why the default bind is 127.0.0.1;
anything that puts frames on a bus (a triggered read, the breaker, time sync) needs the
configured token as ``Authorization: Bearer <token>`` and is refused while none is configured.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import MBusError
from .config import MeterConfig
from .metrics import render_metrics
from .model import Reading, breaker_reason, breaker_state
from .scheduler import AuditUnavailable, CommandError, MeterRefused, Scheduler, Unverified

STATIC = Path(__file__).with_name("static")
MAX_HISTORY = 100_000
MAX_COMMANDS = 1000
# the origin of an HTTP command in the audit trail; one shared token names nobody in particular
HTTP_ORIGIN = "http"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def _address(m: MeterConfig) -> dict[str, Any]:
    return {"kind": m.address_kind, "primary": m.primary, "secondary": m.secondary,
            "fabrication": m.fabrication}


def _reading(r: Reading) -> dict[str, Any]:
    return {"value": r.value, "unit": r.unit, "meter_time": r.meter_time,
            "read_time": r.read_time}


def _float_arg(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            value = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            raise ApiError(400, f"{name}: expected seconds since the epoch or an ISO 8601 "
                                f"time, got {raw!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be finite")
    return value


class HeadendApi:
    def __init__(self, scheduler: Scheduler, *, token: str | None) -> None:
        self.s = scheduler
        self.token = token

    # ---- helpers ----
    def _meter(self, request: Request) -> MeterConfig:
        name = request.path_params["name"]
        meter = self.s.meters.get(name)
        if meter is None:
            raise ApiError(404, f"no meter named {name!r}")
        return meter

    def _authorize(self, request: Request) -> None:
        if not self.token:
            raise ApiError(403, "commands are disabled: no [http] token is configured")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                  self.token.encode()):
            raise ApiError(401, "a valid token is required (Authorization: Bearer <token>)")

    def _meter_json(self, m: MeterConfig, latest: list[Reading]) -> dict[str, Any]:
        h = self.s.health[m.name]
        health = h.as_dict()
        # a bus leased to another worker (PostgreSQL) is polled there: say so, and show
        # the last reading from the shared database
        health["polled_here"] = self.s.buses[m.bus].owned
        if not health["polled_here"] and latest:
            health["state"] = "elsewhere"
            health["last_ok"] = max(r.read_time for r in latest)
        state = breaker_state(latest)
        return {
            "name": m.name, "bus": m.bus, "address": _address(m),
            "identity": h.identity.as_dict(), "health": health, "breaker": m.breaker,
            # what the meter last said, not what was last commanded
            "breaker_state": None if state is None else {
                "state": state[0], "detail": state[1], "reason": breaker_reason(latest),
                "read_time": state[2]},
            "latest": {r.register: _reading(r) for r in latest},
        }

    # ---- endpoints ----
    async def meters(self, request: Request) -> Response:
        latest = await asyncio.to_thread(self.s.storage.latest_all)
        return JSONResponse([self._meter_json(m, latest.get(m.name, []))
                             for m in self.s.meters.values()])

    async def meter(self, request: Request) -> Response:
        m = self._meter(request)
        latest = await asyncio.to_thread(self.s.storage.latest, m.name)
        return JSONResponse(self._meter_json(m, latest))

    async def latest(self, request: Request) -> Response:
        m = self._meter(request)
        rows = await asyncio.to_thread(self.s.storage.latest, m.name)
        return JSONResponse({r.register: _reading(r) for r in rows})

    async def buses(self, request: Request) -> Response:
        now = self.s.monotonic()
        out = []
        for b in self.s.config.buses:
            st = self.s.buses[b.name]
            out.append({
                "name": b.name, "kind": b.kind, "target": b.target, "baud": b.baud,
                "owned": st.owned, "polls": st.polls,
                "busy_ratio": st.busy_seconds / max(now - st.started, 1e-9) if st.owned else 0,
                "meters": [{"name": m.name, "state": self.s.health[m.name].state}
                           for m in self.s.config.meters_on(b.name)],
            })
        return JSONResponse(out)

    async def _history(self, request: Request) -> list[Reading]:
        m = self._meter(request)
        try:
            limit = int(request.query_params.get("limit", "10000"))
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        if not 1 <= limit <= MAX_HISTORY:
            raise ApiError(400, f"limit must be 1-{MAX_HISTORY}")
        register = request.query_params.get("register") or None
        return await asyncio.to_thread(
            self.s.storage.history, m.name, register=register, since=_float_arg(request, "since"),
            until=_float_arg(request, "until"), limit=limit)

    async def history(self, request: Request) -> Response:
        rows = await self._history(request)
        return JSONResponse({"meter": request.path_params["name"], "readings": [
            {"register": r.register, **_reading(r)} for r in rows]})

    async def export_csv(self, request: Request) -> Response:
        rows = await self._history(request)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["meter", "register", "value", "unit", "meter_time", "read_time"])
        for r in rows:
            iso = datetime.fromtimestamp(r.read_time, UTC).isoformat()
            w.writerow([r.meter, r.register, repr(r.value), r.unit, r.meter_time or "", iso])
        name = request.path_params["name"]
        return Response(buf.getvalue(), media_type="text/csv", headers={
            "content-disposition": f'attachment; filename="{name}.csv"'})

    async def commands(self, request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        if not 1 <= limit <= MAX_COMMANDS:
            raise ApiError(400, f"limit must be 1-{MAX_COMMANDS}")
        # the cursor: an id (digits, as "next" gives it) or a time (ISO 8601), never both
        # readings of one string, so an id is never taken for a time
        before = q.get("before") or None
        before_id = before_time = None
        if before is not None:
            if before.isdigit():
                before_id = int(before)
            else:
                try:
                    before_time = datetime.fromisoformat(before).timestamp()
                except ValueError:
                    raise ApiError(400, "before: expected a command id or an ISO 8601 time, "
                                        f"got {before!r}") from None
        rows = await asyncio.to_thread(self.s.storage.commands, meter=q.get("meter") or None,
                                       before_id=before_id, before_time=before_time,
                                       limit=limit)
        last = rows[-1].id if len(rows) == limit else None
        return JSONResponse({"commands": [r.as_dict() for r in rows],
                             "next": None if last is None else str(last)})

    async def read(self, request: Request) -> Response:
        self._authorize(request)
        m = self._meter(request)
        poll = await self.s.read_now(m.name)
        if poll is None:
            h = self.s.health[m.name]
            raise ApiError(504, f"meter {m.name} did not answer: {h.last_error}")
        return JSONResponse({"meter": m.name, "read_time": poll.read_time,
                             "readings": {r.register: _reading(r) for r in poll.readings}})

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    async def breaker(self, request: Request) -> Response:
        self._authorize(request)
        m = self._meter(request)
        body = await self._body(request)
        state = body.get("state")
        if state not in ("open", "closed"):
            raise ApiError(400, 'body must be {"state": "open"} or {"state": "closed"}')
        result = await self.s.command(m.name, "breaker", {"state": state}, origin=HTTP_ORIGIN)
        return JSONResponse({"meter": m.name, "breaker": state, "result": _jsonable(result)})

    async def time_sync(self, request: Request) -> Response:
        self._authorize(request)
        m = self._meter(request)
        when = datetime.fromtimestamp(self.s.clock(), UTC)
        result = await self.s.command(m.name, "set_time", {"when": when}, origin=HTTP_ORIGIN)
        # what was written, in UTC and in the meter's own zone (the wall time its clock shows)
        zone = m.zone
        return JSONResponse({"meter": m.name, "time": when.isoformat(),
                             "timezone": m.timezone or "UTC",
                             "local_time": when.astimezone(zone or UTC).isoformat(),
                             "result": _jsonable(result)})

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(render_metrics(self.s),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


async def _api_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    if isinstance(exc, CommandError):
        return JSONResponse({"error": str(exc)}, status_code=409)
    if isinstance(exc, AuditUnavailable):
        # nothing was sent: the head-end refuses commands it cannot record
        return JSONResponse({"error": str(exc)}, status_code=503)
    if isinstance(exc, Unverified):
        # the meter took the command but does not show the change: neither done (200) nor
        # refused (422) nor unreachable (502); what it reads back goes with the answer
        return JSONResponse({"error": str(exc), "unverified": True, **(exc.readback or {})},
                            status_code=500)
    if isinstance(exc, MeterRefused):
        # the bus works and the meter answered: it said no, which no retry will change
        return JSONResponse({"error": str(exc), "refused": True}, status_code=422)
    return JSONResponse({"error": str(exc) or type(exc).__name__}, status_code=502)


def create_app(scheduler: Scheduler, *, token: str | None = None) -> Starlette:
    api = HeadendApi(scheduler, token=token)
    routes = [
        Route("/", api.index),
        Route("/api/meters", api.meters),
        Route("/api/buses", api.buses),
        Route("/api/commands", api.commands),
        Route("/api/meters/{name}", api.meter),
        Route("/api/meters/{name}/latest", api.latest),
        Route("/api/meters/{name}/history", api.history),
        Route("/api/meters/{name}/export.csv", api.export_csv),
        Route("/api/meters/{name}/read", api.read, methods=["POST"]),
        Route("/api/meters/{name}/breaker", api.breaker, methods=["POST"]),
        Route("/api/meters/{name}/time-sync", api.time_sync, methods=["POST"]),
        Route("/metrics", api.metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Any] = {ApiError: _api_error, MBusError: _api_error}
    return Starlette(routes=routes, exception_handlers=handlers)


__all__ = ["ApiError", "create_app"]
