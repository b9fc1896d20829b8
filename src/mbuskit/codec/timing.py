"""Bus timing of wired M-Bus (EN 13757-2 clause 4 and 5): characters, answer window, timeouts.

Pure arithmetic, no clock: callers turn these durations into sleeps or virtual-clock steps.

* A character is 11 bits on the wire: start bit, 8 data bits, even parity, stop bit (8E1).
* A slave answers between 11 bit times and 330 bit times + 50 ms after the master's last stop
  bit (EN 13757-2, quoted in libmbus ``mbus-serial.c``).
* A master that heard nothing once that window (plus the latency of its own link, e.g. a USB
  adapter or a TCP gateway) has passed calls it a timeout.
"""

from __future__ import annotations

from ..errors import LocalError

BITS_PER_CHAR = 11  # start + 8 data + even parity + stop

# EN 13757-2 clause 5 / EN 13757-3 CI B8h..BFh: the rates a CI baud switch can select.
BAUD_RATES: tuple[int, ...] = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)
_CI_BAUD_FIRST = 0xB8

ANSWER_MIN_BITS = 11
ANSWER_MAX_BITS = 330
ANSWER_SLACK = 0.050  # the "+50 ms" EN 13757-2 allows on top of 330 bit times

# libmbus's serial read timeout (VTIME) by baud: 330 bits + 50 ms + about 100 ms of USB latency
# (libmbus mbus-serial.c). Masters that want libmbus's behaviour can use these.
LIBMBUS_SERIAL_TIMEOUT: dict[int, float] = {
    300: 1.3,
    600: 0.8,
    1200: 0.5,
    2400: 0.3,
    4800: 0.3,
    9600: 0.2,
    19200: 0.2,
    38400: 0.2,
}
LIBMBUS_TCP_TIMEOUT = 4.0  # mbus-tcp.c default SO_RCVTIMEO

# The largest frame: 68 L L 68 + 255 bytes (C A CI + 252 data) + CS 16 (EN 13757-2 5.1).
MAX_FRAME_BYTES = 261


def check_baud(baud: int) -> int:
    """``baud`` if M-Bus defines it, else a LocalError naming the allowed rates."""
    if baud not in BAUD_RATES:
        allowed = ", ".join(str(b) for b in BAUD_RATES)
        raise LocalError(f"{baud} baud is not an M-Bus rate (one of {allowed})")
    return baud


def bit_time(baud: int) -> float:
    return 1.0 / check_baud(baud)


def byte_time(baud: int) -> float:
    """Seconds one 8E1 character occupies the bus."""
    return BITS_PER_CHAR / check_baud(baud)


def frame_time(n_bytes: int, baud: int) -> float:
    """Seconds ``n_bytes`` characters sent back to back occupy the bus."""
    if n_bytes < 0:
        raise LocalError(f"a frame cannot have {n_bytes} bytes")
    return n_bytes * BITS_PER_CHAR / check_baud(baud)


def answer_window(baud: int) -> tuple[float, float]:
    """(earliest, latest) start of a slave's answer after the master's last stop bit."""
    bits = bit_time(baud)
    return ANSWER_MIN_BITS * bits, ANSWER_MAX_BITS * bits + ANSWER_SLACK


def answer_delay(baud: int, bits: float = ANSWER_MIN_BITS) -> float:
    """The delay of a slave that answers ``bits`` bit times after the master's frame.

    Refuses a delay outside the 11..330 bit window: such a slave would break EN 13757-2.
    """
    if not ANSWER_MIN_BITS <= bits <= ANSWER_MAX_BITS:
        raise LocalError(
            f"answer delay of {bits} bit times is outside the EN 13757-2 window "
            f"{ANSWER_MIN_BITS}..{ANSWER_MAX_BITS}"
        )
    return bits * bit_time(baud)


def master_timeout(baud: int, latency: float = 0.0) -> float:
    """How long a master waits for the first byte of an answer before calling it a timeout.

    The latest legal answer start (330 bit times + 50 ms) plus ``latency``, the round trip the
    master's own link adds (USB serial adapter, TCP gateway).
    """
    if latency < 0:
        raise LocalError(f"link latency cannot be negative ({latency})")
    return answer_window(baud)[1] + latency


def exchange_time(request_bytes: int, reply_bytes: int, baud: int,
                  answer_bits: float = ANSWER_MIN_BITS) -> float:
    """Bus seconds of one request and its answer: both frames plus the slave's answer delay."""
    return (frame_time(request_bytes, baud) + answer_delay(baud, answer_bits)
            + frame_time(reply_bytes, baud))


def baud_of_ci(ci: int) -> int | None:
    """The rate a baud-switch CI (B8h..BFh, EN 13757-3 table of CI codes) selects, else None."""
    index = ci - _CI_BAUD_FIRST
    if 0 <= index < len(BAUD_RATES):
        return BAUD_RATES[index]
    return None


def ci_of_baud(baud: int) -> int:
    """The CI that switches a slave to ``baud``."""
    return _CI_BAUD_FIRST + BAUD_RATES.index(check_baud(baud))


__all__ = [
    "ANSWER_MAX_BITS",
    "ANSWER_MIN_BITS",
    "ANSWER_SLACK",
    "BAUD_RATES",
    "BITS_PER_CHAR",
    "LIBMBUS_SERIAL_TIMEOUT",
    "LIBMBUS_TCP_TIMEOUT",
    "MAX_FRAME_BYTES",
    "answer_delay",
    "answer_window",
    "baud_of_ci",
    "bit_time",
    "byte_time",
    "check_baud",
    "ci_of_baud",
    "exchange_time",
    "frame_time",
    "master_timeout",
]
