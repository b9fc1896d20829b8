"""Scans as pure transactions: primary scan, secondary wildcard search, enhanced search.

A search is a generator. It yields a :class:`~mbuskit.master.Request` and is sent back the
:class:`~mbuskit.master.Answer`; it also yields events (:class:`~mbuskit.master.Found`,
:class:`Progress`, :class:`Unresolved`) and is sent back None for those. ``Master.scan_*``
drives it over a transport; tests drive it by hand or over the simulated bus.

Secondary search (EN 13757-3 network layer, selection CI 52h with F wildcard nibbles), and where
it differs from libmbus's (``mbus_scan_2nd_address_range``):

* A mask is split on its *least* significant wildcard ID digit first. Meters of one delivery
  batch have consecutive numbers and differ in the last digits, so they separate at once
  instead of after seven levels of empty probes; random numbers split as well either way.
* An empty mask is probed once, not twice: the answer window is known from the baud rate.
  Noise is told apart from absence by consistency: a mask that collided must hold two meters;
  if its children show fewer, the line is noisy, and from then on empty masks are probed twice
  and every mask left empty before is probed again at the end.
* A clean E5 is "exactly one meter" only after a clean RSP_UD whose address matches the mask
  (several identical E5 look like one on the wired-AND bus); a garbled read-out is a collision.
* Meters that share a meter number (a collision that persists with all eight ID digits fixed)
  are separated by their fabrication number with the enhanced selection (``0C 78`` record with
  F wildcard nibbles), split the same way.
* Found meters are de-duplicated; the bus is left deselected (SND_NKE to 253).
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from .link import ADDRESS_NETWORK, LongFrame
from .master import (
    Answer,
    Expect,
    Found,
    Outcome,
    Request,
    address_of,
    check_primary,
    fabrication_of,
    matches,
    normalize_fabrication,
    normalize_mask,
    req_ud2,
    select_frame,
    snd_nke,
)

DIGITS = "0123456789"  # ID and fabrication digits are BCD (EN 13757-3 7.2); F is the wildcard

Search = Generator[object, Answer | None, None]


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a scan is: ``done`` is the share of the address space settled (0..1)."""

    done: float
    found: int
    probes: int
    mask: str = ""


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Answers under this mask kept colliding with nothing left to split on."""

    mask: str
    fabrication: str | None
    reason: str


class _Kind(enum.Enum):
    EMPTY = "empty"
    FOUND = "found"
    COLLISION = "collision"


@dataclass(slots=True)
class _Node:
    mask: str
    fabrication: str | None
    weight: float  # share of the search space under this mask, for progress


@dataclass(slots=True)
class _State:
    found: dict[tuple[str, str | None], Found] = field(default_factory=dict)
    probes: int = 0
    done: float = 0.0
    careful: bool = False  # noise seen: probe empty masks twice
    unverified: list[_Node] = field(default_factory=list)  # empty after one probe only


def secondary_search(mask: str = "F" * 16, *, fabrication: str | None = None,
                     enhanced: bool = True, careful: bool = False,
                     read_retries: int = 1) -> Search:
    """Find every meter under ``mask`` (libmbus form, F = wildcard).

    ``careful`` starts with empty masks probed twice (a line known to be noisy); otherwise that
    starts at the first sign of noise. ``enhanced`` allows splitting meters that share a meter
    number by their fabrication number.
    """
    root = _Node(normalize_mask(mask), normalize_fabrication(fabrication), 1.0)
    st = _State(careful=careful)
    count = yield from _visit(root, st, enhanced, read_retries)
    if count == 0 and not st.careful:
        # An empty bus is cheap to confirm, and a lost first selection would hide everyone.
        st.unverified.remove(root)
        st.done = 0.0
        yield from _visit(root, st, enhanced, read_retries, verify=True)
    # Masks that stayed empty before we knew the line was noisy get a second look.
    while st.careful and st.unverified:
        node = st.unverified.pop(0)
        st.done -= node.weight
        yield from _visit(node, st, enhanced, read_retries, verify=True)
    # Leave the bus deselected (EN 13757-3: SND_NKE to 253 ends a selection).
    yield Request(snd_nke(ADDRESS_NETWORK), Expect.ACK, ADDRESS_NETWORK)
    yield Progress(1.0, len(st.found), st.probes)


def _visit(node: _Node, st: _State, enhanced: bool, read_retries: int,
           verify: bool = False) -> Generator[object, Answer | None, int]:
    """Probe ``node``, split it on a collision; returns how many meters are under it."""
    kind, frame = yield from _probe(node, st, read_retries, verify)
    if kind is _Kind.EMPTY:
        yield from _settle(node, st)
        return 0
    if kind is _Kind.FOUND:
        assert frame is not None
        address = address_of(frame)
        assert address is not None
        fab = node.fabrication if _exact(node.fabrication) else fabrication_of(frame)
        key = (address, fab if node.fabrication is not None else None)
        if key not in st.found:
            found = Found(address=address, fabrication=fab, frame=frame)
            st.found[key] = found
            yield found
        yield from _settle(node, st)
        return 1
    children = _split(node, enhanced)
    if not children:
        yield Unresolved(node.mask, node.fabrication,
                         "several meters answer this full address and cannot be told apart")
        yield from _settle(node, st)
        return 2
    total = 0
    empty: list[_Node] = []
    for child in children:
        count = yield from _visit(child, st, enhanced, read_retries)
        total += count
        if count == 0:
            empty.append(child)
    suspicious = len(empty) <= len(children) // 2 and not st.careful
    if total < 2 and not st.careful:
        # A collision holds at least two meters; fewer below means a lost frame or a read-out
        # garbled by noise. Look at the empty children again, and be careful from now on.
        st.careful = True
        suspicious = True
    if suspicious:
        # Also when most siblings answered: one empty digit amid a batch of consecutive meter
        # numbers is more likely a lost selection than a gap, and a second look costs little.
        for child in empty:
            if child in st.unverified:
                st.unverified.remove(child)
            st.done -= child.weight
            total += yield from _visit(child, st, enhanced, read_retries, verify=True)
    return total


def _settle(node: _Node, st: _State) -> Generator[object, Answer | None, None]:
    st.done += node.weight
    yield Progress(min(st.done, 1.0), len(st.found), st.probes, node.mask)


def _probe(node: _Node, st: _State, read_retries: int,
           verify: bool) -> Generator[object, Answer | None, tuple[_Kind, LongFrame | None]]:
    select = Request(select_frame(node.mask, node.fabrication), Expect.ACK, ADDRESS_NETWORK)
    attempts = 2 if st.careful and not verify else 1
    answer: Answer | None = None
    for _ in range(attempts):
        st.probes += 1
        answer = yield select
        assert answer is not None
        if answer.outcome is not Outcome.SILENT:
            break
    assert answer is not None
    if answer.outcome is Outcome.SILENT:
        if not st.careful and not verify:
            st.unverified.append(node)
        return _Kind.EMPTY, None
    if answer.outcome is not Outcome.ACK:
        # Several E5 that did not line up, or noise on the E5: either way more probing decides.
        # Identical E5 that overlap look like one (wired AND), so this is a sign of noise too.
        st.careful = True
        return _Kind.COLLISION, None
    # FCB set: the first REQ_UD2 after a selection (EN 13757-2 5.4); a repeat keeps it.
    request = Request(req_ud2(ADDRESS_NETWORK, fcb=True), Expect.DATA, ADDRESS_NETWORK)
    for _ in range(read_retries + 1):
        reply = yield request
        assert reply is not None
        if reply.outcome is Outcome.SILENT:
            st.careful = True  # the meter acknowledged, so its answer got lost
            continue
        if reply.outcome is Outcome.FRAME and isinstance(reply.frame, LongFrame):
            address = address_of(reply.frame)
            if address is not None and matches(address, node.mask):
                fab = fabrication_of(reply.frame)
                if node.fabrication is None or fab is None or _fab_matches(fab, node.fabrication):
                    confirmed = yield from _confirm(node, address, st)
                    if confirmed:
                        return _Kind.FOUND, reply.frame
                    return _Kind.COLLISION, None
            st.careful = True  # a good checksum on the wrong address: noise got through
        return _Kind.COLLISION, None
    return _Kind.COLLISION, None


def _confirm(node: _Node, address: str, st: _State) -> Generator[object, Answer | None, bool]:
    """Whether the meter that answered really has ``address``.

    Several meters answering one read-out combine as a wired AND; once in a while that AND is
    a frame with a good checksum, carrying the AND of their addresses. Selecting the address
    exactly tells: a real meter acknowledges, an AND of several usually matches nobody. Not
    needed when the mask was the full address already.
    """
    if "F" not in node.mask[:8] and (node.fabrication is None or _exact(node.fabrication)):
        return True
    st.probes += 1
    fab = node.fabrication if _exact(node.fabrication) else None
    answer = yield Request(select_frame(address, fab), Expect.ACK, ADDRESS_NETWORK)
    assert answer is not None
    return answer.outcome is Outcome.ACK


def _exact(fabrication: str | None) -> bool:
    return fabrication is not None and "F" not in fabrication


def _fab_matches(fab: str, mask: str) -> bool:
    return all(m in ("F", f) for m, f in zip(mask, fab, strict=True))


def _split(node: _Node, enhanced: bool) -> list[_Node]:
    """Children of a collided mask: its least significant wildcard ID digit set to 0..9; with
    the ID fully given, the same on the fabrication number (enhanced selection)."""
    ident = node.mask[:8]
    weight = node.weight / len(DIGITS)
    pos = ident.rfind("F")
    if pos >= 0:
        return [_Node(node.mask[:pos] + d + node.mask[pos + 1:], node.fabrication, weight)
                for d in DIGITS]
    if not enhanced:
        return []
    fab = node.fabrication or "F" * 8
    pos = fab.rfind("F")
    if pos < 0:
        return []
    return [_Node(node.mask, fab[:pos] + d + fab[pos + 1:], weight) for d in DIGITS]


# ---------------------------------------------------------------------------------------------


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


__all__ = [
    "DIGITS",
    "Progress",
    "Search",
    "Unresolved",
    "primary_scan",
    "secondary_search",
]
