"""Home Assistant availability through the machine's Mosquitto: the discovery configs carry the
head-end's status topic and the meter's own availability topic, and a twin that stops answering
turns its availability offline (and back online when it answers again)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mbuskit.headend.config import parse_config
from mbuskit.headend.runtime import Headend
from mbuskit.headend.storage.sqlite import SqliteStorage
from mbuskit.slave.emulator import Emulator, seeded_meters
from mbuskit.slave.emulator_config import EmulatorConfig, GatewaySpec
from test_headend_mqtt import Collector, _need_broker


async def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_meter_that_stops_answering_becomes_unavailable(tmp_path: Path) -> None:
    _need_broker()
    run = uuid.uuid4().hex[:8]
    specs = seeded_meters(2, 53)
    emu = Emulator(EmulatorConfig(gateways=(GatewaySpec(meters=tuple(specs), port=0),)))
    await emu.start()
    prefix, disc = f"av-{run}", f"avd-{run}"
    cfg = parse_config(
        f'[headend]\nname = "h{run}"\n'
        '[poll]\ninterval = 1\noffline_after = 2\nbackoff_max = 1\n'
        f'[mqtt]\nbroker = "127.0.0.1:1883"\nprefix = "{prefix}"\ndiscovery_prefix = "{disc}"\n'
        f'[[buses]]\nname = "gw"\ntcp = "{emu.served[0].where}"\nbaud = 2400\ntimeout = 0.2\n'
        '[[meters]]\nname = "m1"\nbus = "gw"\nprimary = 1\n'
        '[[meters]]\nname = "m2"\nbus = "gw"\nprimary = 2\n')
    sub = Collector(1883, f"{prefix}/#")
    ha = Collector(1883, f"{disc}/#")
    assert sub.subscribed.wait(5) and ha.subscribed.wait(5)
    h = Headend(cfg, storage=SqliteStorage(tmp_path / "r.db"), http=False)
    await h.start()

    def availability(meter: str) -> list[bytes]:
        return [p for t, p, _ in sub.messages if t == f"{prefix}/{meter}/availability"]

    try:
        energy = f"{disc}/sensor/h{run}_m1/energy/config"
        assert await _until(lambda: energy in ha.topics() and availability("m1") == [b"online"])
        config = json.loads(ha.topics()[energy])
        assert config["availability_mode"] == "all"
        assert [a["topic"] for a in config["availability"]] == [
            f"{prefix}/status", f"{prefix}/m1/availability"]
        assert all(a["payload_available"] == "online" and a["payload_not_available"] == "offline"
                   for a in config["availability"])
        assert "availability_topic" not in config  # HA refuses both forms in one config
        assert sub.topics()[f"{prefix}/status"] == b"online"

        # meter 1 stops answering (its module now listens on another address): offline after
        # offline_after failed polls; meter 2 on the same bus stays online
        slave = next(s for spec, s in emu.meters if spec.address == 1)
        slave.primary_address = 99
        assert await _until(lambda: availability("m1")[-1:] == [b"offline"])
        assert h.scheduler.health["m1"].state == "offline"
        assert availability("m2") == [b"online"]
        # published once per change, not at every failed poll
        await asyncio.sleep(1.5)
        assert availability("m1") == [b"online", b"offline"]
        # retained: a Home Assistant that starts now sees it too
        late = Collector(1883, f"{prefix}/m1/availability")
        assert late.wait(lambda: bool(late.messages))
        assert late.messages[-1][1:] == (b"offline", True)
        late.close()

        slave.primary_address = 1  # answering again
        assert await _until(lambda: availability("m1")[-1:] == [b"online"])
    finally:
        await h.stop()
        await emu.stop()
        for c in (sub, ha):
            for topic in list(c.topics()):
                c.client.publish(topic, b"", qos=1, retain=True)
        time.sleep(0.2)
        sub.close()
        ha.close()
