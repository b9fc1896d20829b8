"""MQTT: each poll as a retained JSON state, and Home Assistant MQTT discovery.

Topics (``prefix`` from the config, default ``mbuskit``):

* ``<prefix>/status``: ``online`` / ``offline`` (retained; the last will says offline),
* ``<prefix>/<meter>/state``: the meter's latest poll as JSON (retained), one key per register,
* ``<prefix>/<meter>/reading/<register>``: each reading as JSON with its unit, meter time and
  read time (retained),
* ``<prefix>/<meter>/breaker/set``: ``open`` / ``closed``, listened to only for meters with
  ``breaker = true``,
* ``<discovery_prefix>/sensor|switch/<node>_<meter>/<register>/config``: discovery (retained).

While the broker is unreachable messages wait in a queue (oldest dropped past ``max_queue``)
and go out in order once the connection is back; paho resends QoS 1 messages in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .config import MeterConfig, MqttConfig
from .model import Identity, Poll

log = logging.getLogger("mbuskit.headend.mqtt")

CommandHandler = Callable[[str, str, dict[str, Any]], Any]  # meter, command, args


def _object_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def sensor_kind(register: str, unit: str) -> tuple[str, str] | None:
    """Home Assistant (device_class, state_class) for a register, or None to not announce it.

    Only present values are announced: stored values (storage number > 0) are history, not a
    sensor state. A cumulative energy register only grows, hence total_increasing; a maximum
    (DIF function field 01) is a measurement.
    """
    parts = register.split(".")
    if any(p.startswith("storage") for p in parts[1:]):
        return None
    cumulative = not any(p in ("maximum", "minimum", "error") for p in parts[1:])
    base = parts[0]
    if base == "energy" and unit == "Wh":
        return "energy", "total_increasing" if cumulative else "measurement"
    if base == "power" and unit == "W":
        return "power", "measurement"
    if base == "voltage" and unit == "V":
        return "voltage", "measurement"
    if base == "current" and unit == "A":
        return "current", "measurement"
    if base == "frequency" and unit == "Hz":
        return "frequency", "measurement"
    return None


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, *, node: str, meters: Sequence[MeterConfig],
                 on_command: CommandHandler | None = None, client_id: str | None = None,
                 max_queue: int = 100_000, reconnect_delay: tuple[int, int] = (1, 30)) -> None:
        self.cfg = cfg
        self.node = _object_id(node)
        self.meters = {m.name: m for m in meters}
        self.on_command = on_command
        self.prefix = cfg.prefix
        self._queue: deque[tuple[str, bytes, bool]] = deque(maxlen=max_queue)
        self._lock = threading.Lock()
        self._announced: set[tuple[str, str]] = set()
        self.connected = threading.Event()
        self.published = 0
        self.dropped = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"mbuskit-{self.node}")
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password)
        self.client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        self.client.reconnect_delay_set(*reconnect_delay)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    def state_topic(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/state"

    def reading_topic(self, meter: str, register: str) -> str:
        return f"{self.prefix}/{meter}/reading/{register}"

    def breaker_topic(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/breaker/set"

    @property
    def pending(self) -> int:
        return len(self._queue)

    # ---- lifecycle ----
    def start(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        # connect_async + loop_start: the first connection is retried in the background too,
        # so a broker that is down at start does not stop the head-end
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    # ---- paho callbacks (network thread) ----
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        self.connected.set()
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        for name, m in self.meters.items():
            if m.breaker:
                client.subscribe(self.breaker_topic(name), qos=1)
        self._flush()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        meter = parts[-3] if len(parts) >= 3 else ""
        state = msg.payload.decode("utf-8", "replace").strip().lower()
        m = self.meters.get(meter)
        if m is None or not m.breaker or state not in ("open", "closed"):
            log.warning("ignored MQTT command on %s: %r", msg.topic, state)
            return
        if self.on_command is None:
            return
        result = self.on_command(meter, "breaker", {"state": state})
        if asyncio.iscoroutine(result) and self._loop is not None:
            asyncio.run_coroutine_threadsafe(result, self._loop)

    # ---- publishing ----
    def _send(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append((topic, payload, retain))
        if self.connected.is_set():
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            while self._queue and self.connected.is_set():
                topic, payload, retain = self._queue[0]
                info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    break  # not connected after all: keep it for the next connection
                self._queue.popleft()
                self.published += 1

    def publish_poll(self, poll: Poll) -> None:
        state: dict[str, Any] = {r.register: r.value for r in poll.readings}
        state["read_time"] = poll.read_time
        state["meter_time"] = next((r.meter_time for r in poll.readings if r.meter_time), None)
        state["units"] = {r.register: r.unit for r in poll.readings}
        for r in poll.readings:
            if (poll.meter, r.register) not in self._announced:
                self._announce(poll.meter, r.register, r.unit, poll.identity)
        if poll.meter in self.meters and self.meters[poll.meter].breaker and \
                (poll.meter, "breaker") not in self._announced:
            self._announce_breaker(poll.meter, poll.identity)
        self._send(self.state_topic(poll.meter), json.dumps(state).encode(), True)
        for r in poll.readings:
            reading = {"meter": r.meter, "register": r.register, "value": r.value,
                       "unit": r.unit, "meter_time": r.meter_time, "read_time": r.read_time}
            self._send(self.reading_topic(poll.meter, r.register),
                       json.dumps(reading).encode(), True)

    def _device(self, meter: str, ident: Identity) -> dict[str, Any]:
        device: dict[str, Any] = {"identifiers": [f"mbuskit_{self.node}_{meter}"],
                                  "name": meter, "via_device": f"mbuskit_{self.node}"}
        if ident.manufacturer:
            device["manufacturer"] = "Kamstrup" if ident.manufacturer == "KAM" \
                else ident.manufacturer
        if ident.version is not None:
            device["model"] = f"{ident.manufacturer or ''} M-Bus version {ident.version}"
        if ident.id:
            device["serial_number"] = ident.fabrication or ident.id
        return device

    def discovery_topic(self, component: str, meter: str, register: str) -> str:
        return (f"{self.cfg.discovery_prefix}/{component}/{self.node}_{_object_id(meter)}/"
                f"{_object_id(register)}/config")

    def _announce(self, meter: str, register: str, unit: str, ident: Identity) -> None:
        self._announced.add((meter, register))
        kind = sensor_kind(register, unit)
        if kind is None:
            return
        device_class, state_class = kind
        config = {
            "name": register.replace(".", " ").replace("_", " "),
            "unique_id": f"mbuskit_{self.node}_{_object_id(meter)}_{_object_id(register)}",
            "state_topic": self.state_topic(meter),
            "value_template": "{{ value_json['%s'] }}" % register,  # noqa: UP031
            "unit_of_measurement": unit,
            "device_class": device_class,
            "state_class": state_class,
            "availability_topic": self.status_topic,
            "device": self._device(meter, ident),
        }
        self._send(self.discovery_topic("sensor", meter, register),
                   json.dumps(config).encode(), True)

    def _announce_breaker(self, meter: str, ident: Identity) -> None:
        self._announced.add((meter, "breaker"))
        config = {
            "name": "breaker",
            "unique_id": f"mbuskit_{self.node}_{_object_id(meter)}_breaker",
            "command_topic": self.breaker_topic(meter),
            "payload_on": "closed",
            "payload_off": "open",
            "optimistic": True,
            "availability_topic": self.status_topic,
            "device": self._device(meter, ident),
        }
        self._send(self.discovery_topic("switch", meter, "breaker"),
                   json.dumps(config).encode(), True)


__all__ = ["MqttPublisher", "sensor_kind"]
