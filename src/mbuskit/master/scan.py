"""Scans as pure transactions: secondary wildcard search and enhanced search, the walk over the
masks (the primary scan is in ``scan_primary``, the selection and read-out of one mask in
``scan_probe``, the reading of collided and damaged answers in ``scan_hints``).

A search is a generator. It yields a :class:`~mbuskit.master.transaction.Request` and is sent
back the :class:`~mbuskit.master.transaction.Answer`; it also yields events
(:class:`~mbuskit.master.transaction.Found`, :class:`Progress`, :class:`Unresolved`) and is
sent back None for those. ``Master.scan_*`` drives it over a transport; tests drive it by hand
or over the simulated bus.

Secondary search (EN 13757-3 network layer, selection CI 52h with F wildcard nibbles), and where
it differs from libmbus's (``mbus_scan_2nd_address_range``):

* A mask is split on its *least* significant wildcard ID digit first. Meters of one delivery
  batch have consecutive numbers and differ in the last digits, so they separate at once
  instead of after seven levels of empty probes; random numbers split as well either way.
  A collided short answer that lines up (wired AND) narrows the split to the digits its AND
  allows (``scan_hints``); without one, once eight meters are found, the split goes to the
  digit they vary least in (a batch's hundreds), where its empty children are paid once.
* An empty mask is probed once, not twice: the answer window is known from the baud rate.
  Noise is told apart from absence by consistency, and the first sign of it makes the search
  careful: from then on an empty mask is believed after three probes, and every mask left
  empty before is probed again at the end. Signs of noise: a collided mask whose children
  show fewer than two meters, or whose meters found do not account for the AND of their
  collided answer (ID and fabrication bits); a mask that answered and then fell silent (to a
  re-selection, a read-out, the confirmation or the application reset); a garbled read-out
  that one flipped bit makes whole, or that is clean when read again; two reads of one
  collision that differ outside the access number, status and checksum. A garbled E5 is
  none (on a real bus several E5s rarely line up). Some empty masks get a second probe at
  once: the children of the whole address space, an empty digit amid answering siblings (a
  batch), the empty children of a collision whose AND has too few free bits to show a
  missing meter, and every empty mask on a bus whose collided answers do not line up (no AND
  to check against; libmbus probes every empty mask twice).
* A collided short read-out is read twice and the two ANDed before its ID digits narrow the
  split: noise can set a bit in one answer, never in both.
* A clean E5 is "exactly one meter" only after a clean RSP_UD whose address matches the mask
  (several identical E5 look like one on the wired-AND bus); a garbled read-out is a collision.
* Meters that share a meter number (a collision that persists with all eight ID digits fixed)
  are separated by their fabrication number with the enhanced selection (``0C 78`` record with
  F wildcard nibbles), split the same way.
* Found meters are de-duplicated; the bus is left deselected (SND_NKE to 253).
* Short reads (default): the meters are asked for their fabrication number only (SND_UD CI
  51h with the selection-for-readout record ``08 78``, EN 13757-3 6.3.4) before the REQ_UD2, so
  the RSP_UD is the 12-byte long header (ID, manufacturer, version, medium) and one record, not
  the whole standard telegram; collisions stay garbled (the short answers still differ in ID
  and fabrication number). The request goes once, to every meter under the search mask at the
  first read-out (the readout selection survives deselection), and one application reset
  (CI 50h) to the whole mask ends the search (``Master`` sends it also when a search is
  stopped half-way). Where the first read-out's request went unanswered, each read-out asks
  and resets on its own. A meter that ignores the request answers in full; one that refuses
  it stays silent, and once refusals outnumber acceptances we stop asking.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass

from ..codec.link import ADDRESS_NETWORK, LongFrame
from .scan_hints import DIGITS, narrow
from .scan_probe import (
    _PRESENT_RETRIES,
    _RESET,
    _RESET_RETRIES,
    _ask_all_short,
    _exact,
    _fab_matches,
    _Kind,
    _Node,
    _read,
    _select,
    _State,
)
from .transaction import (
    Answer,
    Expect,
    Found,
    Outcome,
    Request,
    address_of,
    fabrication_of,
    matches,
    normalize_fabrication,
    normalize_mask,
    select_frame,
    snd_nke,
)

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


def secondary_search(mask: str = "F" * 16, *, fabrication: str | None = None,
                     enhanced: bool = True, careful: bool = False,
                     read_retries: int = 1, short_reads: bool = True) -> Search:
    """Find every meter under ``mask`` (libmbus form, F = wildcard).

    ``careful`` starts with empty masks probed three times (a line known to be noisy); otherwise
    that starts at the first sign of noise. ``enhanced`` allows splitting meters that share a
    meter number by their fabrication number. ``short_reads`` identifies a selected meter by its
    header and fabrication number only (readout selection, then application reset) instead of
    its whole standard telegram.
    """
    root = _Node(normalize_mask(mask), normalize_fabrication(fabrication), 1.0)
    st = _State(careful=careful, enhanced=enhanced, short_reads=short_reads)
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
    if st.keep_short:
        yield from _reset_all(root, st)
    # Leave the bus deselected (EN 13757-3: SND_NKE to 253 ends a selection).
    yield Request(snd_nke(ADDRESS_NETWORK), Expect.ACK, ADDRESS_NETWORK)
    yield Progress(1.0, len(st.found), st.probes)


def restore_requests(mask: str = "F" * 16, fabrication: str | None = None) -> list[Request]:
    """What ends a secondary search with short reads that was stopped half-way: select every
    meter under its mask, application reset (back to the standard telegram), deselect."""
    return [Request(select_frame(normalize_mask(mask), normalize_fabrication(fabrication)),
                    Expect.ACK, ADDRESS_NETWORK),
            _RESET,
            Request(snd_nke(ADDRESS_NETWORK), Expect.ACK, ADDRESS_NETWORK)]


def _reset_all(root: _Node, st: _State) -> Generator[object, Answer | None, None]:
    """Every meter under the search mask back on its standard telegram: select them all, then
    an application reset; repeated while either goes unanswered (a lost frame)."""
    select, reset, _ = restore_requests(root.mask, root.fabrication)
    for _ in range(_RESET_RETRIES + 2):
        st.probes += 2
        answer = yield select
        assert answer is not None
        if answer.outcome is Outcome.SILENT:
            continue
        answer = yield reset
        assert answer is not None
        if answer.outcome is not Outcome.SILENT:
            return


_TOP_WEIGHT = 0.099  # a child of the whole address space (one digit fixed)


class _Entry(enum.Enum):
    """How a node is entered: probed from scratch, already selected (its E5 just came), or
    known to hold several meters (its answers collided)."""

    PROBE = "probe"
    PRESENT = "present"  # answered a selection before: select again, silence is a lost frame
    SELECTED = "selected"
    COLLIDED = "collided"


def _visit(node: _Node, st: _State, enhanced: bool, read_retries: int, *,
           verify: bool = False, entry: _Entry = _Entry.PROBE,
           hint: str | None = None, suspect: bool = False) -> Generator[object, Answer | None, int]:
    """Settle ``node``: returns how many meters are under it. ``suspect``: silent before where
    a meter was expected; selected twice before silence is believed."""
    # meters collided in a read-out (not a garbled E5, which the wired AND makes a sign of
    # noise): each later split may treat a lone answering child as holding them all
    collided = entry is _Entry.COLLIDED
    if entry is not _Entry.COLLIDED:
        if entry is _Entry.PROBE:
            outcome = yield from _select(node, st, verify, suspect=suspect)
            if outcome is Outcome.SILENT:
                yield from _settle(node, st)
                return 0
            if outcome is Outcome.GARBLED and node.weight == 1.0:
                # several E5s that did not line up: no read-out here, but the readout
                # selection for the whole search mask goes out all the same
                yield from _ask_all_short(st)
        elif entry is _Entry.PRESENT:
            outcome = yield from _select(node, st, True)
            for _ in range(_PRESENT_RETRIES):
                if outcome is not Outcome.SILENT:
                    break
                st.careful = True  # it answered this mask a moment ago: the line lost a frame
                outcome = yield from _select(node, st, True)
            if outcome is Outcome.SILENT:
                yield from _settle(node, st)
                return 0
        else:
            outcome = Outcome.ACK
        frame: LongFrame | None = None
        hint = None
        if outcome is Outcome.ACK:
            kind, frame, hint = yield from _read(node, st, read_retries)
            collided = True
        else:
            kind = _Kind.COLLISION
        if kind is _Kind.FOUND:
            assert frame is not None
            yield from _found(node, frame, st)
            yield from _settle(node, st)
            return 1
    children = _hinted_split(node, hint, enhanced) if hint else []
    if children:
        total, empty = yield from _descend(children, st, enhanced, read_retries, hint,
                                           collided)
        if total >= 2:
            total += yield from _recheck(children, empty, st, enhanced, read_retries)
            if empty and hint and not _explains(hint, node, st):
                # the meters found have in common digit bits the collided answer lacked: one
                # that answered then is not found yet, most likely behind a lost selection;
                # probed twice each now (careful)
                st.careful = True
                total += yield from _reprobe(empty, st, enhanced, read_retries, verify=False)
            elif (empty and hint and not st.careful and _weak(hint, node)
                  and len(children) - len(empty) >= 2 and not _batch_gap(children, empty, st)):
                # the meters split here, and an AND of several meters has few bits left, which a
                # meter behind a lost selection would hardly change: that check is weak here,
                # so the empty children get their second probe (where one child took them
                # all, a lost sibling shows as a count below two)
                total += yield from _reprobe(empty, st, enhanced, read_retries)
            # the digits the wired AND ruled out hold nobody: their share is settled too
            yield from _settle(node, st, node.weight - sum(c.weight for c in children))
            return total
        # fewer than two: the hint was damaged by noise; search the node the plain way
        st.careful = True
        st.done -= sum(c.weight for c in children)
    children = _split(node, enhanced, st)
    if not children and entry is _Entry.COLLIDED:
        # nothing left to split on: read it after all (a collision seen through noise may have
        # been one meter)
        return (yield from _visit(node, st, enhanced, read_retries))
    if not children:
        yield Unresolved(node.mask, node.fabrication,
                         "several meters answer this full address and cannot be told apart")
        yield from _settle(node, st)
        return 2
    total, empty = yield from _descend(children, st, enhanced, read_retries, None, collided)
    if total < 2 and not st.careful:
        # A collision holds at least two meters; fewer below means a lost frame or a read-out
        # garbled by noise. Look at the empty children again, and be careful from now on.
        st.careful = True
        total += yield from _reprobe(empty, st, enhanced, read_retries)
        return total
    return total + (yield from _recheck(children, empty, st, enhanced, read_retries))


def _explains(hint: str, node: _Node, st: _State) -> bool:
    """Whether the meters found under ``node`` account for the AND of their collided answer:
    every bit their ID digits (and, from a short answer, fabrication digits) all share must be
    set in the hint's digit (wired AND). A bit they share that the AND lacks was cleared by a
    meter not found yet."""
    shared: dict[int, int] = {}
    for (address, fab), _ in st.found.items():
        if not matches(address, node.mask) or (
                node.fabrication is not None and fab is not None
                and not _fab_matches(fab, node.fabrication)):
            continue
        digits = address[:8] + (fab if fab is not None and len(hint) == 16 else "")
        for p, c in enumerate(digits):
            shared[p] = shared.get(p, 0x0F) & int(c)
    return all(bits & ~int(hint[p]) == 0 for p, bits in shared.items() if p < len(hint))


_WEAK_BITS = 6  # an AND with fewer bits set hardly shows a missing meter (2^-bits)


def _weak(hint: str, node: _Node) -> bool:
    """Whether the collided answer's AND has too few bits set, in the digits the meters under
    ``node`` do not already share by its mask, for a meter not found to be likely to clear
    one of them."""
    fab = node.fabrication or "F" * 8
    free = [c for c, m in zip(hint, node.mask[:8] + fab, strict=False) if m == "F"]
    return sum(int(c).bit_count() for c in free) < _WEAK_BITS


def _batch_gap(children: list[_Node], empty: list[_Node], st: _State) -> bool:
    return (not st.careful and bool(empty) and len(children) >= len(DIGITS)
            and len(empty) <= len(children) // 2)


def _recheck(children: list[_Node], empty: list[_Node], st: _State, enhanced: bool,
             read_retries: int) -> Generator[object, Answer | None, int]:
    """One empty digit amid answering siblings (a batch of consecutive meter numbers) is more
    likely a lost selection than a gap, and a second look at it costs little."""
    if not _batch_gap(children, empty, st):
        return 0
    return (yield from _reprobe(empty, st, enhanced, read_retries, suspect=True))


def _reprobe(empty: list[_Node], st: _State, enhanced: bool, read_retries: int, *,
             verify: bool = True, suspect: bool = False) -> Generator[object, Answer | None, int]:
    total = 0
    for child in empty:
        if child in st.unverified:
            st.unverified.remove(child)
        st.done -= child.weight
        found = yield from _visit(child, st, enhanced, read_retries, verify=verify,
                                  suspect=suspect)
        if found:
            # silent before, answering now: the line lost a frame, and other masks that
            # stayed silent once may hide meters too
            st.careful = True
        total += found
    return total


def _descend(  # noqa: PLR0917
        children: list[_Node], st: _State, enhanced: bool, read_retries: int, hint: str | None,
        collided: bool) -> Generator[object, Answer | None, tuple[int, list[_Node]]]:
    """Children of a collided mask, selected in turn. When only one answers, every meter of
    the collision is under it, so it is split again at once without the read-out that would
    only collide again: the first child that answers is therefore set aside until the others
    are known. Every later one is not alone, and is looked into while its selection is in
    force, which saves selecting it again."""
    outcomes: list[Outcome] = []
    first: int | None = None
    total = 0
    for i, child in enumerate(children):
        # a tenth of the bus behind one lost selection, and nothing may show it: the root's
        # children are probed twice before they count as empty
        outcome = yield from _select(child, st, False, suspect=child.weight >= _TOP_WEIGHT)
        outcomes.append(outcome)
        if outcome is Outcome.SILENT:
            yield from _settle(child, st)
        elif first is None:
            first = i
        else:
            entry = _Entry.COLLIDED if outcome is Outcome.GARBLED else _Entry.SELECTED
            total += yield from _visit(child, st, enhanced, read_retries, entry=entry)
    empty = [c for c, o in zip(children, outcomes, strict=True) if o is Outcome.SILENT]
    if first is None:
        return total, empty
    alone = all(o is Outcome.SILENT for j, o in enumerate(outcomes) if j != first)
    if alone and collided:
        entry, child_hint = _Entry.COLLIDED, hint
    elif outcomes[first] is Outcome.GARBLED:
        entry, child_hint = _Entry.COLLIDED, None
    else:
        # selected again, unless nothing was sent since its own selection
        entry = _Entry.SELECTED if alone and first == len(children) - 1 else _Entry.PRESENT
        child_hint = None
    total += yield from _visit(children[first], st, enhanced, read_retries, entry=entry,
                               hint=child_hint)
    return total, empty


def _found(node: _Node, frame: LongFrame, st: _State) -> Generator[object, Answer | None, None]:
    address = address_of(frame)
    assert address is not None
    fab = node.fabrication if _exact(node.fabrication) else fabrication_of(frame)
    key = (address, fab)
    if key not in st.found:
        found = Found(address=address, fabrication=fab, frame=frame)
        st.found[key] = found
        yield found


def _settle(node: _Node, st: _State,
            weight: float | None = None) -> Generator[object, Answer | None, None]:
    st.done += node.weight if weight is None else weight
    yield Progress(min(st.done, 1.0), len(st.found), st.probes, node.mask)


def _hinted_split(node: _Node, hint: str, enhanced: bool = True) -> list[_Node]:
    """Children of a collided mask that the AND of the meters' IDs allows.

    A wildcard digit with one candidate (7 or 9: no other BCD digit has all its bits) is the
    same for every meter and is fixed at once; the mask is split on the wildcard digit with
    the fewest candidates (at least two), the more significant one on a tie: below a shared
    prefix, a batch of consecutive numbers takes few values in its leading free digit, and
    splitting there first leaves dense groups that split without empty probes.

    With the ID fully given (meters sharing a meter number), the same on the fabrication
    number when the collided answer was a short one and carried its AND.
    """
    ident = node.mask[:8]
    if "F" in ident:
        return [_Node(digits + node.mask[8:], node.fabrication, weight)
                for digits, weight in narrow(ident, hint[:8], node.weight, batch=True)]
    if not enhanced or len(hint) != 16:
        return []
    fab = node.fabrication or "F" * 8
    # serial numbers of meters that share a meter number are not a batch: no last-digit rule
    return [_Node(node.mask, digits, weight)
            for digits, weight in narrow(fab, hint[8:], node.weight, batch=False)]


_LEARN_AFTER = 8  # meters found before their digits steer the split


def _split_position(ident: str, st: _State | None) -> int:
    """Which wildcard digit of ``ident`` to split on (-1: none left).

    Every empty child is paid for once per node split there, so a digit that takes few values
    is best split high in the tree, where it is paid once, and a digit that never varies is
    best split last (it only separates meters that share everything else). Once enough meters
    are found, their digits say which is which: in a batch of 250 consecutive numbers the
    hundreds take three values, the tens and units ten each, the rest one. Without that
    knowledge, or where every digit varies alike (random numbers), the least significant."""
    free = [p for p in range(8) if ident[p] == "F"]
    if not free:
        return -1
    if st is None or len(st.found) < _LEARN_AFTER:
        return free[-1]
    seen = {p: {address[p] for address, _ in st.found} for p in free}
    varying = [p for p in free if len(seen[p]) > 1]
    if not varying:
        return free[-1]
    return min(varying, key=lambda p: (len(seen[p]), -p))


def _split(node: _Node, enhanced: bool, st: _State | None = None) -> list[_Node]:
    """Children of a collided mask: a wildcard ID digit set to 0..9; with the ID fully given,
    the same on the fabrication number (enhanced selection).

    The digit is the least significant wildcard one (a delivery batch differs there), unless
    the meters found so far show a better one (``_split_position``)."""
    ident = node.mask[:8]
    weight = node.weight / len(DIGITS)
    pos = _split_position(ident, st)
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


__all__ = [
    "Progress",
    "Search",
    "Unresolved",
    "restore_requests",
    "secondary_search",
]
