"""MQTT against a real broker: the machine's Mosquitto (127.0.0.1:1883) and, for the dropped
broker test, a private mosquitto process on a free port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from headend_fakes import kamstrup_telegram
from mbuskit.headend.config import MqttConfig, parse_config
from mbuskit.headend.model import Poll, identity_from, readings_from
from mbuskit.headend.mqtt import MqttPublisher, sensor_kind

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _need_broker() -> None:
    if not _port_open("127.0.0.1", 1883):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no MQTT broker on 127.0.0.1:1883")
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (start mosquitto)")


class Collector:
    """A subscriber that records every message it gets."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.topic = topic
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4()}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), bool(m.retain)))
        self.client.reconnect_delay_set(0, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: Any, *args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def wait(self, predicate: Any, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def topics(self) -> dict[str, bytes]:
        return {t: p for t, p, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _poll(meter: str, energy: float, t: float) -> Poll:
    tel = kamstrup_telegram(1, 14839120, energy, 230.0)
    return Poll(meter, int(t), t, identity_from([tel]), tuple(readings_from(meter, [tel], t)))


METERS = parse_config('[[buses]]\nname = "b"\ntcp = "h:1"\n'
                      '[[meters]]\nname = "kam1"\nbus = "b"\nprimary = 1\nbreaker = true\n'
                      '[[meters]]\nname = "kam2"\nbus = "b"\nprimary = 2\n').meters


def test_sensor_kinds() -> None:
    assert sensor_kind("energy", "Wh") == ("energy", "total_increasing")
    assert sensor_kind("energy.tariff1", "Wh") == ("energy", "total_increasing")
    assert sensor_kind("power.phase_L1", "W") == ("power", "measurement")
    assert sensor_kind("power.maximum", "W") == ("power", "measurement")
    assert sensor_kind("energy.storage1", "Wh") is None
    assert sensor_kind("on_time", "s") is None


def test_state_and_discovery_on_real_broker() -> None:
    _need_broker()
    run = uuid.uuid4().hex[:8]
    # commands on (MqttConfig itself does not ask for credentials; parse_config does)
    cfg = MqttConfig(host="127.0.0.1", prefix=f"mbt-{run}", discovery_prefix=f"ha-{run}",
                     commands=True)
    sub = Collector(1883, "#")
    assert sub.subscribed.wait(5)
    commands: list[tuple[str, str, dict[str, Any]]] = []
    pub = MqttPublisher(cfg, node=f"site-{run}", meters=METERS,
                        on_command=lambda *a: commands.append(a))
    pub.start()
    try:
        assert pub.connected.wait(5)
        pub.publish_poll(_poll("kam1", 5000.0, 1000.0))
        pub.publish_poll(_poll("kam2", 7000.0, 1000.0))
        state_topic = f"mbt-{run}/kam1/state"
        assert sub.wait(lambda: state_topic in sub.topics()
                        and f"mbt-{run}/kam2/state" in sub.topics())
        state = json.loads(sub.topics()[state_topic])
        assert state["energy"] == 5000.0 and state["units"]["energy"] == "Wh"
        assert state["read_time"] == 1000.0
        assert sub.wait(lambda: f"mbt-{run}/kam1/reading/power.phase_L1" in sub.topics())
        reading = json.loads(sub.topics()[f"mbt-{run}/kam1/reading/power.phase_L1"])
        assert reading == {"meter": "kam1", "register": "power.phase_L1",
                           "value": pytest.approx(230 / 3), "unit": "W", "meter_time": None,
                           "read_time": 1000.0}
        disc = {t: json.loads(p) for t, p in sub.topics().items() if t.startswith(f"ha-{run}/")}
        energy = disc[f"ha-{run}/sensor/site-{run}_kam1/energy/config"]
        assert energy["device_class"] == "energy" and energy["state_class"] == "total_increasing"
        assert energy["unit_of_measurement"] == "Wh"
        assert energy["device"]["manufacturer"] == "Kamstrup"
        assert energy["value_template"] == "{{ value_json['energy'] }}"
        power = disc[f"ha-{run}/sensor/site-{run}_kam1/power_phase_L1/config"]
        assert power["device_class"] == "power" and power["state_class"] == "measurement"
        # the breaker switch only for the meter that has it enabled
        switches = [t for t in disc if "/switch/" in t]
        assert switches == [f"ha-{run}/switch/site-{run}_kam1/breaker/config"]
        assert disc[switches[0]]["command_topic"] == f"mbt-{run}/kam1/breaker/set"
        assert sub.topics()[f"mbt-{run}/status"] == b"online"
        # a late subscriber gets the retained state
        late = Collector(1883, f"mbt-{run}/kam2/state")
        assert late.wait(lambda: bool(late.messages))
        assert late.messages[0][2] is True and json.loads(late.messages[0][1])["energy"] == 7000
        late.close()
        # breaker commands from MQTT: only for the enabled meter
        sub.client.publish(f"mbt-{run}/kam2/breaker/set", "open", qos=1)
        sub.client.publish(f"mbt-{run}/kam1/breaker/set", "open", qos=1)
        assert sub.wait(lambda: bool(commands))
        time.sleep(0.2)
        assert commands == [("kam1", "breaker", {"state": "open"})]
    finally:
        pub.stop()
        # clean the retained messages of this run off the shared broker
        for topic in list(sub.topics()):
            if topic.startswith((f"mbt-{run}/", f"ha-{run}/")):
                sub.client.publish(topic, b"", qos=1, retain=True)
        time.sleep(0.2)
        sub.close()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    if not Path(MOSQUITTO).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but mosquitto is not installed")
        pytest.skip("mosquitto is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen([MOSQUITTO, "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = time.monotonic() + 5
        while not _port_open("127.0.0.1", port):
            assert time.monotonic() < end, "mosquitto did not start"
            time.sleep(0.05)

    def kill() -> None:
        procs[-1].kill()
        procs[-1].wait()

    start()
    yield port, (start, kill)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_dropped_broker_queues_and_delivers(private_broker: tuple[int, Any]) -> None:
    port, (start, kill) = private_broker
    cfg = MqttConfig(host="127.0.0.1", port=port, prefix="q")
    pub = MqttPublisher(cfg, node="n", meters=METERS, reconnect_delay=(1, 1))
    pub.start()
    assert pub.connected.wait(5)
    kill()
    assert _wait_false(pub.connected)
    # read while the broker is gone: queued, not lost
    for i in range(5):
        pub.publish_poll(_poll("kam2", 100.0 + i, 2000.0 + i))
    assert pub.pending >= 5
    start()
    sub = Collector(port, "q/kam2/state")
    assert sub.subscribed.wait(5)
    assert pub.connected.wait(10)
    assert sub.wait(lambda: len(sub.messages) >= 5, timeout=10)
    values = [json.loads(p)["energy"] for _, p, _ in sub.messages]
    assert values[-5:] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert pub.pending == 0
    sub.close()
    pub.stop()


def _wait_false(ev: threading.Event, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while ev.is_set():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


async def test_headend_publishes_polls_and_takes_breaker_commands(tmp_path: Path) -> None:
    _need_broker()
    import asyncio

    from headend_fakes import FakeReader
    from mbuskit.headend.runtime import Headend
    from mbuskit.headend.storage.sqlite import SqliteStorage

    run = uuid.uuid4().hex[:8]
    cfg = parse_config(
        f'[headend]\nname = "h{run}"\n[mqtt]\nbroker = "127.0.0.1:1883"\nprefix = "hx-{run}"\n'
        f'discovery_prefix = "hd-{run}"\ncommands = true\n'
        # the shared broker lets anyone in; the ACL test is in test_headend_mqtt_commands.py
        'username = "headend"\npassword = "not-checked-here"\n'
        '[[buses]]\nname = "b"\ntcp = "h:1"\n'
        '[[meters]]\nname = "kam1"\nbus = "b"\nprimary = 1\nbreaker = true\ninterval = 0.2\n')
    reader = FakeReader({"kam1": 14839120})
    sub = Collector(1883, f"hx-{run}/#")
    assert sub.subscribed.wait(5)
    h = Headend(cfg, readers={"b": reader}, storage=SqliteStorage(tmp_path / "r.db"),
                http=False)
    await h.start()
    try:
        end = time.monotonic() + 5
        while f"hx-{run}/kam1/state" not in sub.topics() and time.monotonic() < end:
            await asyncio.sleep(0.05)
        state = json.loads(sub.topics()[f"hx-{run}/kam1/state"])
        assert state["energy"] > 1000 and state["units"]["power"] == "W"
        # a command from Home Assistant's switch goes through the scheduler to the bus
        sub.client.publish(f"hx-{run}/kam1/breaker/set", "open", qos=1)
        end = time.monotonic() + 5
        while not reader.commands and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert reader.commands == [("kam1", "breaker", {"state": "open"})]
    finally:
        await h.stop()
        for topic in list(sub.topics()):
            sub.client.publish(topic, b"", qos=1, retain=True)
        ha = Collector(1883, f"hd-{run}/#")
        ha.wait(lambda: bool(ha.messages), timeout=1)
        for topic in list(ha.topics()):
            ha.client.publish(topic, b"", qos=1, retain=True)
        time.sleep(0.2)
        ha.close()
        sub.close()
    # said goodbye on stop (before the test wiped its retained topics)
    assert (f"hx-{run}/status", b"offline") in [(t, p) for t, p, _ in sub.messages]
