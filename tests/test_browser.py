"""The head-end web page in a real headless browser (Debian's chromium): it shows the meters of
each bus and draws the energy and per-phase power plots from live data."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
def demo(demo_url_token: tuple[str, str]) -> str:
    return demo_url_token[0]


@pytest.fixture
def demo_url_token() -> Iterator[tuple[str, str]]:
    _need_chromium()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mbuskit.cli", "demo", "--http", "127.0.0.1:0", "--buses", "2",
         "--meters", "3", "--interval", "0.3s", "--duration", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stream = proc.stdout

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    url = token = None
    end = time.monotonic() + 30
    while url is None and time.monotonic() < end:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if m := re.search(r"API token for commands: (\S+)", line):
            token = m.group(1)
        m = re.search(r"open (http://\S+/)", line)
        url = m.group(1) if m else None
    try:
        assert url and token, "mbus demo printed no URL or token"
        time.sleep(3)  # a few polls, so that there are lines to draw
        yield url, token
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [_need_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--window-size=1200,1000", *args],
        capture_output=True, timeout=90, check=False)


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB/RGBA PNG (what chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):  # PNG filters (RFC 2083 6)
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rgb = bytes(line) if channels == 3 else bytes(
            v for j in range(0, stride, 4) for v in line[j:j + 3])
        rows.append(rgb)
        prev = line
    return width, height, rows


def _count(rows: list[bytes], target: tuple[int, int, int], tol: int = 40) -> int:
    n = 0
    for row in rows:
        for i in range(0, len(row), 3):
            if all(abs(row[i + k] - target[k]) <= tol for k in range(3)):
                n += 1
    return n


def test_page_shows_meters_and_draws_plots(demo: str, tmp_path: Path) -> None:
    demo_url = demo
    dom = _chromium(tmp_path, "--dump-dom", demo_url).stdout.decode()
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("state") == "ready", attrs
    assert attrs["meters"] == "6"
    assert int(attrs["plotted"]) >= 4  # points drawn on the two canvases
    assert attrs["plot-series"] == "4"  # A+ and the three phases L1-L3
    # the meters of each bus, with their state
    assert dom.count('class="bus"') == 2
    assert len(re.findall(r'class="meter[^"]*" data-meter="kam-\d{8}" data-state="ok"', dom)) == 6
    assert "KAM " in dom

    shot = tmp_path / "page.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", demo_url)
    assert shot.exists(), r.stderr.decode()[-500:]
    width, height, rows = read_png(shot.read_bytes())
    assert (width, height) == (1200, 1000)
    # not blank: many pixels differ from the page background
    background = rows[height - 1][:3]
    differ = sum(1 for row in rows for i in range(0, len(row), 3) if row[i:i + 3] != background)
    assert differ > width * height * 0.2
    # the plot lines were drawn: the series colours (L1/A+ blue, L2 red, L3 green)
    assert _count(rows, (0x25, 0x63, 0xEB)) > 300
    assert _count(rows, (0xDC, 0x26, 0x26)) > 100
    assert _count(rows, (0x16, 0xA3, 0x4A)) > 100


def test_png_reader_on_a_known_image() -> None:
    # 2x2 RGB: red, green / blue, white; rows with filter 0 and 2 (up)
    raw = b"\x00" + bytes((255, 0, 0, 0, 255, 0)) + b"\x02" + bytes((0, 0, 255, 255, 0, 255))
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    w, h, rows = read_png(png)
    assert (w, h) == (2, 2)
    assert rows == [bytes((255, 0, 0, 0, 255, 0)), bytes((255, 0, 255, 255, 255, 255))]


class Cdp:
    """Just enough of the Chrome DevTools Protocol: evaluate JavaScript in the page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg["result"]
                return result

    async def js(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                            returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    async def until(self, expression: str, timeout: float = 15.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"never true: {expression}")


@contextlib.asynccontextmanager
async def cdp_page(url: str, profile: Path) -> AsyncIterator[Cdp]:
    """Chromium on ``url`` with its DevTools protocol open, once the page is ready."""
    import websockets

    proc = subprocess.Popen(
        [_need_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1200,1000", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < end, "chromium did not open its debugging port"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets: list[dict[str, Any]] = []
        while not any(t["type"] == "page" for t in targets):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.loads(r.read())
        page = next(t for t in targets if t["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            cdp = Cdp(ws)
            await cdp.until("!!document.body && document.body.dataset.state === 'ready'")
            yield cdp
    finally:
        proc.kill()
        proc.wait()


RESULT = "document.getElementById('cmd-result').textContent"


async def click_command(cdp: Cdp, label: str, secret: str) -> None:
    await cdp.js(f"document.getElementById('cmd-result').textContent = '';"
                 f"document.getElementById('token').value = {json.dumps(secret)};"
                 f"[...document.querySelectorAll('.commands button')]"
                 f".find(b => b.textContent === {json.dumps(label)}).click()")


async def answer_dialog(cdp: Cdp, button: str) -> None:
    """The disconnect confirmation: wait for it, then press ``confirm-yes`` or ``confirm-no``."""
    await cdp.until("document.getElementById('confirm-dialog').open")
    await cdp.js(f"document.getElementById('{button}').click()")
    await cdp.until("!document.getElementById('confirm-dialog').open")


async def test_commands_from_the_page_need_the_token(demo_url_token: tuple[str, str],
                                                    tmp_path: Path) -> None:
    url, token = demo_url_token
    async with cdp_page(url, tmp_path / "cdp") as cdp:
        selected = await cdp.js("document.getElementById('meter-select').value")
        assert selected.startswith("kam-")
        # the demo reads the standard read-out, which carries no breaker state
        badge = f"document.querySelector('[data-meter=\"{selected}\"] .badge')"
        assert await cdp.js(f"{badge}.dataset.breaker") == "unknown"

        async def press(label: str, secret: str) -> str:
            await click_command(cdp, label, secret)
            if label == "Breaker open":
                await answer_dialog(cdp, "confirm-yes")
            text: str = await cdp.until(f"/done|:/.test({RESULT}) && {RESULT}")
            return text

        assert "valid token" in await press("Breaker open", "wrong-token")
        assert await press("Breaker open", token) == f"breaker {selected}: done"
        assert (await press("Read now", token)).endswith(": done")
        # the meter twin really disconnected its load: no power through an open breaker
        latest = f"fetch('/api/meters/{selected}/latest').then(r => r.json())"
        assert (await cdp.js(latest))["power"]["value"] == 0
        assert await press("Breaker close", token) == f"breaker {selected}: done"
        assert (await press("Read now", token)).endswith(": done")
        assert (await cdp.js(latest))["power"]["value"] > 0
        assert (await press("Sync clock", token)).endswith(": done")
        shot = await cdp.call("Page.captureScreenshot", format="png")
        width, height, _ = read_png(base64.b64decode(shot["data"]))
        assert width > 0 and height > 0


async def test_breaker_badge_confirmation_and_command_list(tmp_path: Path) -> None:
    # a head-end in this process over the Kamstrup twin, reading the additional read-out (which
    # carries the breaker state), so that the test can look at the twin's own breaker
    from mbuskit.headend.config import parse_config
    from mbuskit.headend.runtime import Headend
    from mbuskit.headend.storage.sqlite import SqliteStorage
    from mbuskit.slave.emulator import Emulator, seeded_meters
    from mbuskit.slave.emulator_config import EmulatorConfig, GatewaySpec
    from mbuskit.slave.meter import BreakerState

    _need_chromium()
    token = "browser-token-1"
    (spec,) = seeded_meters(1, 41)
    emu = Emulator(EmulatorConfig(gateways=(GatewaySpec(meters=(spec,), port=0),)))
    await emu.start()
    cfg = parse_config(
        f'[http]\nbind = "127.0.0.1:0"\ntoken = "{token}"\n'
        f'[[buses]]\nname = "gw"\ntcp = "{emu.served[0].where}"\nbaud = 2400\n'
        '[[meters]]\nname = "flat"\nbus = "gw"\nprimary = 1\nbreaker = true\n'
        'data = "additional"\ninterval = "1h"\n')
    h = Headend(cfg, storage=SqliteStorage(tmp_path / "r.db"))
    await h.start()
    assert h.url is not None

    def twin() -> BreakerState:
        state: BreakerState = emu.find_meter(spec.serial_number).breaker
        return state

    commands = "fetch('/api/commands?meter=flat').then(r => r.json()).then(b => b.commands)"
    badge = "document.querySelector('[data-meter=\"flat\"] .badge')"
    try:
        async with cdp_page(h.url, tmp_path / "cdp") as cdp:
            # the start-up read carried the state: the badge shows it
            await cdp.until(f"{badge} && {badge}.dataset.breaker === 'closed'")
            assert await cdp.js(f"{badge}.textContent") == "breaker closed"
            # disconnect, then cancel: nothing is sent
            await click_command(cdp, "Breaker open", token)
            await answer_dialog(cdp, "confirm-no")
            assert "cancelled" in await cdp.until(f"/cancelled/.test({RESULT}) && {RESULT}")
            await asyncio.sleep(0.5)
            assert twin() is BreakerState.CONNECTED
            assert await cdp.js(commands) == []
            # disconnect, confirmed: the twin opens, the audit row is there and listed
            await click_command(cdp, "Breaker open", token)
            await answer_dialog(cdp, "confirm-yes")
            assert await cdp.until(f"/done|:/.test({RESULT}) && {RESULT}") == "breaker flat: done"
            assert twin() is BreakerState.DISCONNECTED
            (row,) = await cdp.js(commands)
            assert (row["command"], row["args"], row["outcome"], row["origin"]) == (
                "breaker", {"state": "open"}, "ok", "http")
            assert row["readback"]["breaker_state"] == "open"
            await cdp.until(f"{badge}.dataset.breaker === 'open'")
            assert await cdp.js(f"{badge}.textContent") == "breaker open: disconnected (command)"
            rows = "[...document.querySelectorAll('#command-rows tr')]"
            await cdp.until(f"{rows}.length === 1")
            cells = await cdp.js(f"{rows}.map(r => [r.dataset.outcome, r.textContent])")
            assert cells[0][0] == "ok" and "breaker" in cells[0][1] and "state=open" in cells[0][1]
            # reconnecting needs no confirmation; the list shows both, the badge follows
            await click_command(cdp, "Breaker close", token)
            assert await cdp.until(f"/done|:/.test({RESULT}) && {RESULT}") == "breaker flat: done"
            assert twin() is BreakerState.CONNECTED
            await cdp.until(f"{rows}.length === 2")
            await cdp.until(f"{badge}.dataset.breaker === 'closed'")
    finally:
        await h.stop()
        await emu.stop()
