"""The generic M-Bus slave: addressing, selection, FCB, baud switching (EN 13757-2 / -3).

Sans-I/O: :meth:`Slave.handle` takes one frame that arrived at the slave's baud rate (already
checked by :class:`~mbuskit.codec.link.FrameReader`) and the current time, and returns the bytes the
slave puts on the bus, or None for silence. What the data *is* belongs to a :class:`Device`;
this module only knows the link and network layer rules.

Behaviour chosen where the standard leaves room (see also docs/register-map.md):

* Addressing (EN 13757-2 5.5, EN 13757-3 network layer): the slave answers its primary address,
  253 while selected, and 254; it executes frames to 255 but never answers them. An RSP_UD
  always carries the slave's own primary address, also when asked via 253 or 254 (Kamstrup
  practice, flowIQ TD).
* FCB (EN 13757-2 5.4): the slave remembers the FCB of its last answered REQ_UD2 for
  ``repeat_window`` seconds. Within the window an unchanged FCB repeats the last telegram
  position (with current values: lost-answer recovery) and a toggled FCB gives the next
  telegram, wrapping to the first after a telegram without "more records follow". Outside the
  window, after SND_NKE, after any other frame addressed to this slave, or for FCV=0, the next
  REQ_UD2 starts again at the first telegram. libmbus never toggles the FCB for single reads
  (always C=5B): with this rule its periodic reads always get the first telegram instead of
  stepping through a multi-telegram answer.
* SND_UD repeated with the same FCB (FCV=1), byte-identical, within the window and with nothing
  else addressed to the slave in between, is acknowledged again without being executed twice
  (the master lost the E5). This protects add/subtract commands such as a prepayment top-up.
* A SND_UD the device refuses, or a CI the slave does not implement, gets no acknowledgement,
  and the reason is held as an application error (CI 70h, EN 13757-3 clause 6.6) for the next
  REQ_UD2. SND_NKE or a later SND_UD that is executed clears a held error.
* Baud rates (CI B8h..BFh): the supported ones are acknowledged at the old rate, then the slave
  listens at the new rate. If no frame arrives at the new rate within ``baud_fallback`` seconds
  the slave returns to the old rate (vendor practice: ABB, Gossen-Metrawatt), so that a master
  which never follows (libmbus's switch tool does not change its own port) cannot lose it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..codec.header import SecondaryAddress, manufacturer_code
from ..codec.link import (
    ADDRESS_BROADCAST,
    ADDRESS_MAX_PRIMARY,
    ADDRESS_NETWORK,
    ADDRESS_TEST,
    Ack,
    Frame,
    Function,
    LongFrame,
    ShortFrame,
    control,
    decode_frame,
)
from ..codec.selection import decode_selection
from ..errors import EncodeError, MBusError

# CI codes the slave itself interprets (EN 13757-3 table 2 and the older Usergroup table)
CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECTION = 0x52
CI_DESELECTION = 0x56  # mode 2 selection, used by jMBus and ABB as "deselect"
CI_APPLICATION_ERROR = 0x70

BAUD_BY_CI: Mapping[int, int] = {
    0xB8: 300, 0xB9: 600, 0xBA: 1200, 0xBB: 2400, 0xBC: 4800, 0xBD: 9600, 0xBE: 19200,
    0xBF: 38400,
}
CI_BY_BAUD: Mapping[int, int] = {baud: ci for ci, baud in BAUD_BY_CI.items()}

# CI 70h error codes (EN 13757-3 table "application errors", libmbus mbus_data_error_lookup)
APP_ERROR_UNSPECIFIED = 0x00
APP_ERROR_UNIMPLEMENTED_CI = 0x01
APP_ERROR_BUFFER_TOO_LONG = 0x02
APP_ERROR_TOO_MANY_RECORDS = 0x03
APP_ERROR_PREMATURE_END = 0x04
APP_ERROR_TOO_MANY_DIFE = 0x05
APP_ERROR_TOO_MANY_VIFE = 0x06
APP_ERROR_BUSY = 0x08
APP_ERROR_TOO_MANY_READOUTS = 0x09

DEFAULT_REPEAT_WINDOW = 30.0  # > libmbus's 3 retries at its 4 s TCP timeout
DEFAULT_BAUD_FALLBACK = 60.0


@dataclass(frozen=True, slots=True)
class Identity:
    """What the slave compares a selection against (EN 13757-3 secondary address).

    ``ident`` is the 8-digit identification number (the meter number), ``fabrication`` the
    fabrication (serial) number used by enhanced selection, None when the device has none.
    """

    ident: int
    manufacturer: str
    version: int
    medium: int
    fabrication: int | None = None

    secondary: SecondaryAddress = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # built (and validated) once: every slave on a bus compares it with every selection
        address = SecondaryAddress(self.ident, self.manufacturer, self.version, self.medium)
        object.__setattr__(self, "secondary", address)
        if self.fabrication is not None and not 0 <= self.fabrication <= 99_999_999:
            raise EncodeError(f"fabrication number must have 8 digits, got {self.fabrication}")

    def secondary_address(self) -> SecondaryAddress:
        return self.secondary

    def address_bytes(self) -> bytes:
        """ID (BCD, LSB first), manufacturer (LSB first), version, medium: as on the wire."""
        return self.secondary_address().to_bytes()


@dataclass(frozen=True, slots=True)
class Response:
    """Application data of one RSP_UD: CI and the bytes after it."""

    ci: int
    data: bytes
    more_follows: bool = False  # the telegram ends in DIF 1Fh; another one follows


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The device's verdict on a SND_UD.

    ``primary_address`` asks the slave to take a new primary address once the E5 is sent
    (the address belongs to the link layer). ``error`` is the CI 70h code held for the next
    REQ_UD2 when the command is refused.
    """

    accepted: bool
    error: int = APP_ERROR_UNSPECIFIED
    reason: str = ""
    primary_address: int | None = None


ACCEPTED = CommandResult(True)


def refused(reason: str, error: int = APP_ERROR_UNSPECIFIED) -> CommandResult:
    return CommandResult(False, error=error, reason=reason)


class Device(Protocol):
    """The application behind a slave: identity, data telegrams and commands."""

    def identity(self) -> Identity: ...

    def respond(self, now: float, index: int) -> Response:
        """Telegram ``index`` (0 = first) of the current read-out, with values as of ``now``."""
        ...

    def command(self, ci: int, data: bytes, now: float) -> CommandResult:
        """A SND_UD with a CI the slave does not handle itself (51h, 5Ah, 5Bh, A0h, ...)."""
        ...

    def reset(self, subcode: int | None, now: float) -> CommandResult:
        """Application reset (CI 50h) with its optional subcode byte (EN 13757-3 6.5)."""
        ...


class EventKind(enum.Enum):
    ANSWERED = "answered"
    EXECUTED_SILENTLY = "executed_silently"  # broadcast 255
    IGNORED = "ignored"  # not addressed to us, or not a master frame
    BAD_FRAME = "bad_frame"
    REFUSED = "refused"
    SELECTED = "selected"
    DESELECTED = "deselected"
    BAUD_FALLBACK = "baud_fallback"


@dataclass(frozen=True, slots=True)
class SlaveEvent:
    """One line of the slave's trace: what happened to a frame and why."""

    now: float
    kind: EventKind
    detail: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes the slave sends, and the baud rate it listens at afterwards (None: unchanged)."""

    data: bytes
    new_baud: int | None = None


class _Read(enum.Enum):
    FIRST = "first"
    REPEAT = "repeat"
    NEXT = "next"


@dataclass(slots=True)
class _FcbMemory:
    fcb: bool
    at: float
    index: int
    more_follows: bool


@dataclass(slots=True)
class _LastCommand:
    frame: LongFrame
    at: float
    reply: Reply | None


_ACK = Ack().encode()


@dataclass(slots=True)
class _Baud:
    rate: int
    previous: int | None = None
    deadline: float | None = None


class Slave:
    """An M-Bus slave (EN 13757-2 link + EN 13757-3 network layer) around a :class:`Device`."""

    def __init__(
        self,
        device: Device,
        *,
        primary_address: int = 0,
        baud: int = 2400,
        supported_bauds: tuple[int, ...] = (300, 2400, 9600),
        repeat_window: float = DEFAULT_REPEAT_WINDOW,
        baud_fallback: float | None = DEFAULT_BAUD_FALLBACK,
        trace_length: int = 256,
    ) -> None:
        _check_primary(primary_address)
        if baud not in supported_bauds:
            raise EncodeError(f"baud {baud} not among the supported rates {supported_bauds}")
        for rate in supported_bauds:
            if rate not in CI_BY_BAUD:
                raise EncodeError(f"baud {rate} has no EN 13757-3 CI code")
        self.device = device
        self.primary_address = primary_address
        self.supported_bauds = tuple(supported_bauds)
        self.repeat_window = repeat_window
        self.baud_fallback = baud_fallback
        self.selected = False
        self.trace: deque[SlaveEvent] = deque(maxlen=trace_length)
        self._baud = _Baud(baud)
        self._fcb: _FcbMemory | None = None
        self._last_command: _LastCommand | None = None
        self._pending_error: int | None = None

    # -- state visible to servers ------------------------------------------------------------

    @property
    def baud(self) -> int:
        """The rate the slave listens at; frames at any other rate are noise to it."""
        return self._baud.rate

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next (the baud fall-back), or None."""
        return self._baud.deadline

    def handle_timer(self, now: float) -> None:
        deadline = self._baud.deadline
        if deadline is not None and now >= deadline and self._baud.previous is not None:
            self._event(now, EventKind.BAUD_FALLBACK,
                        f"no frame at {self._baud.rate} Bd, back to {self._baud.previous} Bd")
            self._baud = _Baud(self._baud.previous)

    def to_state(self) -> dict[str, Any]:
        """The link configuration a real module keeps over a power cycle."""
        state: dict[str, Any] = {"primary_address": self.primary_address, "baud": self.baud}
        device_state = getattr(self.device, "to_state", None)
        if callable(device_state):
            state["device"] = device_state()
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`to_state` output (the device part is the device's business)."""
        try:
            address = int(state["primary_address"])
            baud = int(state["baud"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EncodeError(f"slave state lacks a valid primary_address/baud: {exc}") from exc
        _check_primary(address)
        if baud not in self.supported_bauds:
            raise EncodeError(f"stored baud {baud} not among {self.supported_bauds}")
        self.primary_address = address
        self._baud = _Baud(baud)

    # -- input ---------------------------------------------------------------------------------

    def handle_bytes(self, data: bytes, now: float) -> Reply | None:
        """Decode exactly one frame and handle it; a bad frame gets silence and a trace line."""
        try:
            frame = decode_frame(data)
        except MBusError as exc:
            self._event(now, EventKind.BAD_FRAME, str(exc))
            return None
        return self.handle(frame, now)

    def handle(self, frame: Frame, now: float) -> Reply | None:
        self.handle_timer(now)
        if isinstance(frame, Ack) or not frame.from_master:
            self._event(now, EventKind.IGNORED, "not a frame from the master")
            return None
        # a frame at the new rate confirms a baud switch
        self._baud.previous = None
        self._baud.deadline = None
        function = frame.function
        if (isinstance(frame, LongFrame) and frame.address == ADDRESS_NETWORK
                and frame.ci == CI_SELECTION and function is Function.SND_UD):
            return self._selection(frame, now)
        if not self._addressed(frame.address):
            self._event(now, EventKind.IGNORED, f"address {frame.address} is not ours")
            return None
        silent = frame.address == ADDRESS_BROADCAST
        if isinstance(frame, ShortFrame):
            reply = self._short(frame, function, now)
        elif function is Function.SND_UD:
            reply = self._snd_ud(frame, now)
        else:
            self._forget()
            self._event(now, EventKind.IGNORED, f"long frame with C={frame.control:02X}")
            reply = None
        if silent:
            if reply is not None:
                self._event(now, EventKind.EXECUTED_SILENTLY, "broadcast 255: no answer")
            return None
        return reply

    def _addressed(self, address: int) -> bool:
        if address in (self.primary_address, ADDRESS_TEST, ADDRESS_BROADCAST):
            return True
        return address == ADDRESS_NETWORK and self.selected

    # -- short frames --------------------------------------------------------------------------

    def _short(self, frame: ShortFrame, function: Function | None, now: float) -> Reply | None:
        if function is Function.SND_NKE:
            # link reset: FCB memory and any held error go; a slave addressed via 253 (or every
            # slave, for 255) also leaves the selected state (flowIQ TD; ABB A43 p.196)
            self._forget()
            self._pending_error = None
            if frame.address in (ADDRESS_NETWORK, ADDRESS_BROADCAST) and self.selected:
                self.selected = False
                self._event(now, EventKind.DESELECTED, f"SND_NKE to {frame.address}")
            return self._answer(now, _ACK, "SND_NKE acknowledged")
        if function is Function.REQ_UD2:
            return self._req_ud2(frame, now)
        if function is Function.REQ_UD1:
            # no class 1 (alarm) data: acknowledge, as Kamstrup documents for its meters
            self._forget()
            return self._answer(now, _ACK, "REQ_UD1 acknowledged, no class 1 data")
        if function is Function.REQ_SKE:
            self._forget()
            rsp = ShortFrame(control(Function.RSP_SKE), self.primary_address).encode()
            return self._answer(now, rsp, "RSP_SKE")
        self._event(now, EventKind.IGNORED, f"short frame with C={frame.control:02X}")
        return None

    def _req_ud2(self, frame: ShortFrame, now: float) -> Reply | None:
        memory = self._fcb
        if not frame.fcv or memory is None or now - memory.at > self.repeat_window:
            kind = _Read.FIRST
        elif frame.fcb == memory.fcb:
            kind = _Read.REPEAT
        else:
            kind = _Read.NEXT
        self._last_command = None
        if self._pending_error is not None:
            code = self._pending_error
            self._pending_error = None
            self._fcb = None
            out = LongFrame(control(Function.RSP_UD), self.primary_address, CI_APPLICATION_ERROR,
                            bytes((code,)))
            return self._answer(now, out.encode(), f"application error {code:02X}")
        if kind is _Read.FIRST or memory is None:
            index = 0
        elif kind is _Read.REPEAT:
            index = memory.index
        else:
            index = memory.index + 1 if memory.more_follows else 0
        response = self.device.respond(now, index)
        out = LongFrame(control(Function.RSP_UD), self.primary_address, response.ci, response.data)
        self._fcb = _FcbMemory(frame.fcb, now, index, response.more_follows) if frame.fcv else None
        return self._answer(now, out.encode(), f"RSP_UD telegram {index + 1} ({kind.value})")

    # -- SND_UD --------------------------------------------------------------------------------

    def _snd_ud(self, frame: LongFrame, now: float) -> Reply | None:
        last = self._last_command
        if (frame.fcv and last is not None and last.frame == frame
                and now - last.at <= self.repeat_window):
            # same FCB, same bytes: our E5 was lost, do not execute twice (EN 13757-2 5.4)
            last.at = now
            self._event(now, EventKind.ANSWERED, "repeated SND_UD acknowledged, not re-executed")
            return last.reply
        self._forget()
        reply = self._execute(frame, now)
        if frame.fcv and frame.address != ADDRESS_BROADCAST:
            self._last_command = _LastCommand(frame, now, reply)
        return reply

    def _execute(self, frame: LongFrame, now: float) -> Reply | None:
        ci = frame.ci
        if ci in BAUD_BY_CI:
            return self._switch_baud(BAUD_BY_CI[ci], frame.data, now)
        if ci == CI_DESELECTION:
            if frame.data and not _selection_matches(frame.data, self.device.identity()):
                self._event(now, EventKind.IGNORED, "CI 56h for another secondary address")
                return None
            if self.selected:
                self.selected = False
                self._event(now, EventKind.DESELECTED, "CI 56h")
            return self._answer(now, _ACK, "CI 56h acknowledged")
        if ci == CI_SELECTION:
            # selection is only meaningful at 253; at a primary address it is not implemented
            self._refuse(now, refused("selection outside address 253",
                                      APP_ERROR_UNIMPLEMENTED_CI))
            return None
        if ci == CI_APPLICATION_RESET:
            if len(frame.data) > 1:
                self._refuse(now, refused("CI 50h takes at most one subcode byte",
                                          APP_ERROR_BUFFER_TOO_LONG))
                return None
            result = self.device.reset(frame.data[0] if frame.data else None, now)
        else:
            result = self.device.command(ci, frame.data, now)
        if not result.accepted:
            self._refuse(now, result)
            return None
        if result.primary_address is not None:
            _check_primary(result.primary_address)
        self._pending_error = None  # a held error belongs to the last SND_UD only
        reply = self._answer(now, _ACK, f"CI {ci:02X} executed")
        if result.primary_address is not None:
            self.primary_address = result.primary_address
        return reply

    def _switch_baud(self, rate: int, data: bytes, now: float) -> Reply | None:
        if data or rate not in self.supported_bauds:
            self._refuse(now, refused(f"baud {rate} not supported",
                                      APP_ERROR_UNIMPLEMENTED_CI))
            return None
        self._pending_error = None
        if rate == self._baud.rate:
            return self._answer(now, _ACK, f"already at {rate} Bd")
        old = self._baud.rate
        deadline = None if self.baud_fallback is None else now + self.baud_fallback
        self._baud = _Baud(rate, previous=old, deadline=deadline)
        self._event(now, EventKind.ANSWERED, f"E5 at {old} Bd, now listening at {rate} Bd")
        return Reply(_ACK, new_baud=rate)

    def _selection(self, frame: LongFrame, now: float) -> Reply | None:
        # every slave evaluates a selection; a match selects, anything else deselects
        # (EN 13757-3 network layer; ABB A43 p.196; Elvaco CMeX50 6.3.14)
        if _selection_matches(frame.data, self.device.identity()):
            self._forget()
            self.selected = True
            self._event(now, EventKind.SELECTED, frame.data.hex())
            return self._answer(now, _ACK, "selection matched")
        if self.selected:
            self._forget()
            self.selected = False
            self._event(now, EventKind.DESELECTED, "non-matching selection")
        else:
            self._event(now, EventKind.IGNORED, "selection for another slave")
        return None

    # -- helpers -------------------------------------------------------------------------------

    def _forget(self) -> None:
        self._fcb = None
        self._last_command = None

    def _refuse(self, now: float, result: CommandResult) -> None:
        self._pending_error = result.error
        self._event(now, EventKind.REFUSED, result.reason or f"error {result.error:02X}")

    def _answer(self, now: float, data: bytes, detail: str) -> Reply:
        self._event(now, EventKind.ANSWERED, detail)
        return Reply(data)

    def _event(self, now: float, kind: EventKind, detail: str) -> None:
        self.trace.append(SlaveEvent(now, kind, detail))


def _check_primary(address: int) -> None:
    if not 0 <= address <= ADDRESS_MAX_PRIMARY:
        raise EncodeError(f"primary address must be 0-{ADDRESS_MAX_PRIMARY}, got {address}")


def _selection_matches(data: bytes, identity: Identity) -> bool:
    """A selection (CI 52h/56h data) against our identity (EN 13757-3 network layer).

    8 bytes: ID with Fh nibble wildcards, manufacturer bytes, version and medium each with the
    FFh byte wildcard. Enhanced selection appends the fabrication number as a ``0C 78`` BCD8
    record; nibble wildcards are accepted there as well (the standard is silent; the ID rule
    is the natural extension). Any other shape is not a selection of us.
    """
    try:
        selection = decode_selection(data)
    except MBusError:
        return False
    return selection.matches(identity.secondary_address(), identity.fabrication)


__all__ = [
    "ACCEPTED",
    "APP_ERROR_BUFFER_TOO_LONG",
    "APP_ERROR_BUSY",
    "APP_ERROR_PREMATURE_END",
    "APP_ERROR_TOO_MANY_DIFE",
    "APP_ERROR_TOO_MANY_READOUTS",
    "APP_ERROR_TOO_MANY_RECORDS",
    "APP_ERROR_TOO_MANY_VIFE",
    "APP_ERROR_UNIMPLEMENTED_CI",
    "APP_ERROR_UNSPECIFIED",
    "BAUD_BY_CI",
    "CI_APPLICATION_ERROR",
    "CI_APPLICATION_RESET",
    "CI_BY_BAUD",
    "CI_DATA_SEND",
    "CI_DESELECTION",
    "CI_SELECTION",
    "CommandResult",
    "Device",
    "EventKind",
    "Identity",
    "Reply",
    "Response",
    "Slave",
    "SlaveEvent",
    "manufacturer_code",
    "refused",
]
