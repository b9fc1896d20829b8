from __future__ import annotations

import pytest

from mbuskit.codec import timing
from mbuskit.errors import LocalError, MBusError


def test_a_character_is_eleven_bits() -> None:
    # 8E1: at 2400 baud one byte is 11/2400 s = 4.583 ms
    assert timing.byte_time(2400) == pytest.approx(0.0045833, rel=1e-4)
    assert timing.byte_time(300) == pytest.approx(11 / 300)
    assert timing.frame_time(5, 9600) == pytest.approx(5 * 11 / 9600)
    assert timing.frame_time(0, 9600) == 0.0


def test_answer_window_matches_the_standard_figures() -> None:
    # protocol-facts 2.5: 1.15 s at 300 baud, about 84 ms at 9600 baud
    lo, hi = timing.answer_window(300)
    assert lo == pytest.approx(11 / 300)
    assert hi == pytest.approx(1.15)
    lo, hi = timing.answer_window(9600)
    assert lo == pytest.approx(0.0011458, rel=1e-4)
    assert hi == pytest.approx(0.084375)


def test_master_timeout_adds_link_latency() -> None:
    assert timing.master_timeout(2400) == pytest.approx(330 / 2400 + 0.05)
    assert timing.master_timeout(2400, latency=0.1) == pytest.approx(330 / 2400 + 0.15)
    # libmbus's serial VTIME must cover the window at every rate it supports
    for baud, vtime in timing.LIBMBUS_SERIAL_TIMEOUT.items():
        assert vtime >= timing.master_timeout(baud)
    with pytest.raises(LocalError):
        timing.master_timeout(2400, latency=-1)


def test_answer_delay_refuses_delays_outside_the_window() -> None:
    assert timing.answer_delay(2400) == pytest.approx(11 / 2400)
    assert timing.answer_delay(2400, 330) == pytest.approx(330 / 2400)
    for bits in (10, 331):
        with pytest.raises(LocalError, match="outside"):
            timing.answer_delay(2400, bits)


def test_exchange_time_sums_request_delay_and_reply() -> None:
    # REQ_UD2 (5 bytes) and the 76-byte Kamstrup 382 answer at 2400 baud
    got = timing.exchange_time(5, 76, 2400)
    assert got == pytest.approx((5 + 76) * 11 / 2400 + 11 / 2400)


@pytest.mark.parametrize("baud", [0, 110, 2401, 57600])
def test_unknown_baud_is_an_mbus_error(baud: int) -> None:
    with pytest.raises(MBusError, match="not an M-Bus rate"):
        timing.byte_time(baud)
    with pytest.raises(LocalError):
        timing.ci_of_baud(baud)


def test_baud_switch_ci_codes() -> None:
    # EN 13757-3: B8h 300 ... BBh 2400 ... BDh 9600 ... BFh 38400
    assert timing.baud_of_ci(0xB8) == 300
    assert timing.baud_of_ci(0xBB) == 2400
    assert timing.baud_of_ci(0xBD) == 9600
    assert timing.baud_of_ci(0xBF) == 38400
    assert timing.baud_of_ci(0xB7) is None
    assert timing.baud_of_ci(0xC0) is None
    for baud in timing.BAUD_RATES:
        assert timing.baud_of_ci(timing.ci_of_baud(baud)) == baud
    with pytest.raises(LocalError):
        timing.frame_time(-1, 2400)
