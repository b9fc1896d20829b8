"""Primary scan as a pure transaction: SND_NKE to each primary address, then identify.

A generator like the secondary search (``scan``): it yields a
:class:`~mbuskit.master.transaction.Request` and is sent back the
:class:`~mbuskit.master.transaction.Answer`; it also yields
:class:`~mbuskit.master.transaction.Found` and :class:`~mbuskit.master.scan.Progress` events.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

from ..codec.link import LongFrame
from .scan import Progress, Search
from .transaction import (
    Answer,
    Expect,
    Found,
    Outcome,
    Request,
    address_of,
    check_primary,
    fabrication_of,
    req_ud2,
    snd_nke,
)


def primary_scan(addresses: Sequence[int], *, identify: bool = True, retries: int = 1,
                 careful: bool = False) -> Search:
    """SND_NKE to each primary address; a meter answers E5. With ``identify`` each one found is
    read (REQ_UD2) for its secondary address, which also shows two meters sharing an address:
    their E5 look like one, their RSP_UD collide.

    A garbled answer is retried: noise passes, a collision stays. Silent addresses are probed
    once; once noise has been seen they get a second probe at the end.
    """
    targets = [check_primary(a, allow_special=False) for a in addresses]
    noisy = careful
    silent: list[int] = []
    found = 0
    probes = 0
    for index, address in enumerate(targets):
        outcome = None
        for attempt in range(retries + 1):
            probes += 1
            answer = yield Request(snd_nke(address), Expect.ACK, address)
            assert answer is not None
            outcome = answer.outcome
            if outcome is Outcome.ACK or (outcome is Outcome.SILENT and not noisy):
                break
            if outcome is Outcome.GARBLED and attempt < retries:
                noisy = True
        if outcome is Outcome.SILENT:
            silent.append(address)
        elif outcome is not None:
            item = yield from _identify(address, outcome, identify, retries)
            found += 1
            if (item.note or "").startswith("noise"):
                noisy = True
            yield item
        yield Progress((index + 1) / max(len(targets), 1), found, probes)
    if noisy:
        for address in silent:
            probes += 1
            answer = yield Request(snd_nke(address), Expect.ACK, address)
            assert answer is not None
            if answer.outcome is not Outcome.SILENT:
                found += 1
                yield (yield from _identify(address, answer.outcome, identify, retries))
        yield Progress(1.0, found, probes)


def _identify(address: int, outcome: Outcome, identify: bool,
              retries: int) -> Generator[object, Answer | None, Found]:
    if outcome is Outcome.GARBLED:
        return Found(primary=address, note="collision: several meters answer at this address")
    if not identify:
        return Found(primary=address)
    request = Request(req_ud2(address, fcb=True), Expect.DATA, address)
    garbled = False
    for _ in range(retries + 1):
        reply = yield request
        assert reply is not None
        if reply.outcome is Outcome.FRAME and isinstance(reply.frame, LongFrame):
            note = "noise: read-out needed a retry" if garbled else ""
            return Found(address=address_of(reply.frame), primary=address,
                         fabrication=fabrication_of(reply.frame), frame=reply.frame, note=note)
        garbled = garbled or reply.outcome is Outcome.GARBLED
    if garbled:
        return Found(primary=address,
                     note="collision: several meters share this primary address")
    return Found(primary=address, note="answers SND_NKE but not REQ_UD2")


__all__ = ["primary_scan"]
