"""MQTT: each poll as a retained JSON state, and Home Assistant MQTT discovery.

Topics (``prefix`` from the config, default ``mbuskit``):

* ``<prefix>/status``: ``online`` / ``offline`` (retained; the last will says offline),
* ``<prefix>/<meter>/state``: the meter's latest poll as JSON (retained), one key per register,
* ``<prefix>/<meter>/availability``: ``online`` while the meter answers, ``offline`` once the
  scheduler marks it offline (``offline_after`` failed polls; retained),
* ``<prefix>/<meter>/reading/<register>``: each reading as JSON with its unit, meter time and
  read time (retained),
* ``<prefix>/<meter>/breaker/set``: ``open`` / ``closed`` or ``{"state": "open", "time": T}``,
  listened to only with ``[mqtt] commands = true`` and for meters with ``breaker = true``;
  retained and stale commands are ignored (``_command``),
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
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .config import MeterConfig, MqttConfig
from .model import Identity, Poll, breaker_reason, breaker_state

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
                 max_queue: int = 100_000, reconnect_delay: tuple[int, int] = (1, 30),
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.node = _object_id(node)
        self.meters = {m.name: m for m in meters}
        self.on_command = on_command
        self.clock = clock
        self.ignored = 0  # command messages not executed (retained, stale, malformed)
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

    def availability_topic(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/availability"

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
            if m.breaker and self.cfg.commands:
                client.subscribe(self.breaker_topic(name), qos=1)
        self._flush()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        meter = parts[-3] if len(parts) >= 3 else ""
        m = self.meters.get(meter)
        if not msg.payload:
            return  # an empty message is how a retained one is cleared (ours among them)
        if msg.retain:
            # a retained command is a past order replayed to every new subscription: it must
            # never switch a breaker (at every restart); clear it so nobody gets it again
            self.ignored += 1
            log.warning("ignored retained MQTT command on %s; cleared it", msg.topic)
            client.publish(msg.topic, b"", qos=1, retain=True)
            return
        state, why = self._command(bytes(msg.payload))
        if m is None or not m.breaker or state is None:
            self.ignored += 1
            log.warning("ignored MQTT command on %s: %s", msg.topic,
                        why or "breaker control is not enabled for this meter")
            return
        if self.on_command is None:
            return
        result = self.on_command(meter, "breaker", {"state": state})
        if asyncio.iscoroutine(result) and self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(result, self._loop)
            future.add_done_callback(lambda f: _log_outcome(msg.topic, state, f))

    def _command(self, payload: bytes) -> tuple[str | None, str | None]:
        """The breaker state a command payload asks for, or None and the reason to ignore it.

        Plain ``open``/``closed`` arrive live (the session is clean and retained ones are
        refused above); ``{"state": ..., "time": unix seconds}`` also carries its age, for the
        paths that can delay a message unseen (a bridge, a client queueing while offline).
        """
        text = payload.decode("utf-8", "replace").strip()
        if text.startswith("{"):
            try:
                body = json.loads(text)
            except ValueError:
                return None, "not JSON"
            if not isinstance(body, dict):
                return None, "not a JSON object"
            state, sent = body.get("state"), body.get("time")
            if sent is not None:
                if isinstance(sent, bool) or not isinstance(sent, int | float):
                    return None, f"time must be unix seconds, got {sent!r}"
                age = self.clock() - sent
                if abs(age) > self.cfg.command_max_age:
                    return None, (f"stale: sent {age:.0f} s ago (max "
                                  f"{self.cfg.command_max_age:g} s)" if age > 0 else
                                  f"sent {-age:.0f} s in the future (clock skew)")
        else:
            state = text.lower()
        if state not in ("open", "closed"):
            return None, f"state must be open or closed, got {state!r}"
        return str(state), None

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
        if (breaker := breaker_state(poll.readings)) is not None:
            state["breaker_state"] = breaker[0]  # "open" / "closed", the switch's words
            state["breaker_reason"] = breaker_reason(poll.readings)
        for r in poll.readings:
            if (poll.meter, r.register) not in self._announced:
                self._announce(poll.meter, r.register, r.unit, poll.identity)
        m = self.meters.get(poll.meter)
        if self.cfg.commands and m is not None and m.breaker and \
                (poll.meter, "switch:breaker") not in self._announced:
            self._announce_breaker(poll.meter, poll.identity)
        self._send(self.state_topic(poll.meter), json.dumps(state).encode(), True)
        for r in poll.readings:
            reading = {"meter": r.meter, "register": r.register, "value": r.value,
                       "unit": r.unit, "meter_time": r.meter_time, "read_time": r.read_time}
            self._send(self.reading_topic(poll.meter, r.register),
                       json.dumps(reading).encode(), True)

    def publish_availability(self, meter: str, state: str) -> None:
        """A scheduler health state as the meter's availability. A meter still ``retrying``
        stays online: one missed answer on a bus is normal, and Home Assistant would flicker."""
        if state in ("ok", "offline"):
            payload = b"online" if state == "ok" else b"offline"
            self._send(self.availability_topic(meter), payload, True)

    def _availability(self, meter: str) -> dict[str, Any]:
        # both must say online: a stopped head-end (its last will) or a meter that stopped
        # answering each make the entities unavailable
        return {"availability": [
                    {"topic": topic, "payload_available": "online",
                     "payload_not_available": "offline"}
                    for topic in (self.status_topic, self.availability_topic(meter))],
                "availability_mode": "all"}

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
            **self._availability(meter),
            "device": self._device(meter, ident),
        }
        self._send(self.discovery_topic("sensor", meter, register),
                   json.dumps(config).encode(), True)

    def _announce_breaker(self, meter: str, ident: Identity) -> None:
        self._announced.add((meter, "switch:breaker"))  # apart from the register
        config: dict[str, Any] = {
            "name": "breaker",
            "unique_id": f"mbuskit_{self.node}_{_object_id(meter)}_breaker",
            "command_topic": self.breaker_topic(meter),
            "payload_on": "closed",
            "payload_off": "open",
            **self._availability(meter),
            "device": self._device(meter, ident),
        }
        if self.meters[meter].data == "additional":
            # the module sends its breaker state in the additional read-out: the switch shows
            # what the meter says (read back after each command), not what was asked
            config.update({"state_topic": self.state_topic(meter),
                           "value_template": "{{ value_json.breaker_state }}",
                           "state_on": "closed", "state_off": "open"})
        else:
            config["optimistic"] = True  # a standard read-out carries no breaker state
        self._send(self.discovery_topic("switch", meter, "breaker"),
                   json.dumps(config).encode(), True)


def _log_outcome(topic: str, state: str, future: Any) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is None:
        log.info("MQTT command on %s: breaker %s done", topic, state)
    else:
        log.warning("MQTT command on %s: breaker %s failed: %s", topic, state, exc)


__all__ = ["MqttPublisher", "sensor_kind"]
