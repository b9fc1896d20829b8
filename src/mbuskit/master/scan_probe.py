"""One mask of the secondary search probed (``scan`` walks the masks): its selection, and the
read-out that tells one meter from several, with the state the walk and the probes share.

* Selection (EN 13757-3 network layer, CI 52h with F wildcard nibbles): silence (nobody), one
  clean E5 (one meter, or several whose E5s line up) or garbled E5s. An empty mask is believed
  after one probe (two where a meter is suspected or collided answers do not line up), after
  three once noise was seen.
* Read-out (REQ_UD2 to 253, FCB set as after a selection, EN 13757-2 5.4): FOUND once a clean
  RSP_UD names an address under the mask and, where the mask was not exact, a selection of that
  address (enhanced, with the fabrication number it carries) confirms it is no wired AND of
  several meters; COLLISION otherwise, with the AND of the collided answers' digits when they
  lined up (``scan_hints``).
  A damaged answer that one flipped bit makes whole is checked by selecting the meter it names.
* Short reads: before the read-out, the readout selection of the fabrication number (SND_UD CI
  51h, record ``08 78``, EN 13757-3 6.3.4); after it, the application reset (CI 50h, EN
  13757-3 6.5) that puts the meters back on their standard telegram.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass, field

from ..codec.link import ADDRESS_NETWORK, LongFrame
from .scan_hints import and_hint, differ_beyond_counters, one_bit_off
from .transaction import (
    CI_APPLICATION_RESET,
    CI_DATA_SEND,
    Answer,
    Expect,
    Found,
    Outcome,
    Request,
    address_of,
    fabrication_of,
    matches,
    req_ud2,
    select_frame,
    snd_ud,
)

# Selection for readout (DIF data field 8h, EN 13757-3 6.3.4) of the fabrication number
# (VIF 78h): the one record the enhanced search needs besides the long header.
READOUT_FABRICATION = bytes((0x08, 0x78))
# to the selected meters: that readout selection, and the application reset (CI 50h, EN 13757-3
# 6.5) that ends it
_ASK_SHORT = Request(snd_ud(ADDRESS_NETWORK, CI_DATA_SEND, READOUT_FABRICATION, fcb=True),
                     Expect.ACK, ADDRESS_NETWORK)
_RESET = Request(snd_ud(ADDRESS_NETWORK, CI_APPLICATION_RESET, fcb=False), Expect.ACK,
                 ADDRESS_NETWORK)
_RESET_RETRIES = 2  # an application reset lost on the line is repeated (it is idempotent)


class _Kind(enum.Enum):
    """What the read-out of a selected mask showed."""

    EMPTY = "empty"
    FOUND = "found"
    COLLISION = "collision"


@dataclass(slots=True)
class _Node:
    """A mask of the search: ID digits, manufacturer, version, medium and the fabrication
    number of the enhanced selection (F = wildcard)."""

    mask: str
    fabrication: str | None
    weight: float  # share of the search space under this mask, for progress


@dataclass(slots=True)
class _State:
    """What the search has learnt so far, shared by the walk (``scan``) and the probes."""

    found: dict[tuple[str, str | None], Found] = field(default_factory=dict)
    probes: int = 0
    done: float = 0.0
    careful: bool = False  # noise seen: an empty mask is believed after three probes
    unverified: list[_Node] = field(default_factory=list)  # empty after one probe only
    enhanced: bool = True  # meters understand the enhanced selection (0C 78 record)
    short_reads: bool = True  # ask for the fabrication number only before a read-out
    short_accepted: int = 0  # readout selections acknowledged
    short_refused: int = 0  # silent readout selections before a clean read-out
    reset_pending: bool = False  # a readout selection may be in force: reset before selecting
    reset_retries: int = 0  # repeats of that reset on silence (none when the meters were silent)
    # the readout selection went to every meter under the search mask (the first read-out):
    # later read-outs need neither a readout selection nor a reset, one reset ends the search
    keep_short: bool = False
    misaligned: bool = False  # collided answers arrive one after another (no wired AND)


# more selections (or REQ_UD2) on silence where a meter answered a moment ago: its frame got lost
_PRESENT_RETRIES = 3
_CAREFUL_PROBES = 3  # selections before an empty mask is believed, once noise was seen


def _select(node: _Node, st: _State, verify: bool, *,
            suspect: bool = False) -> Generator[object, Answer | None, Outcome]:
    """Selection of a mask: SILENT (nobody), ACK (one or more, identical E5) or GARBLED."""
    select = Request(select_frame(node.mask, node.fabrication), Expect.ACK, ADDRESS_NETWORK)
    # on a noisy line a selection (about 140 bits) is lost now and then; an empty answer is
    # believed after three (one probed before, ``verify``, gets two more)
    attempts = (_CAREFUL_PROBES - 1 if verify else _CAREFUL_PROBES) if st.careful else 1
    if suspect or (st.misaligned and not verify):
        attempts = max(attempts, 2)
    answer: Answer | None = None
    for attempt in range(attempts):
        st.probes += 1
        answer = yield select
        assert answer is not None
        if answer.outcome is not Outcome.SILENT:
            if attempt:
                st.careful = True  # silent, then answering: the line lost a frame
            break
    assert answer is not None
    if answer.outcome is Outcome.SILENT:
        if not st.careful and not verify:
            st.unverified.append(node)
        return Outcome.SILENT
    if answer.outcome is not Outcome.ACK:
        # Several E5 that did not line up (on a real bus slaves answer after different delays),
        # or noise on one E5: either way more probing decides. Not a sign of noise by itself:
        # the walk's split (``scan``) shows whether the mask held several meters.
        if len(answer.raw) > 1:
            # answers one after another: collided answers do not line up on this bus, so they
            # carry no AND to check noise against; a lost selection may show nowhere else, so
            # empty masks get two probes (as libmbus gives every one)
            st.misaligned = True
        return Outcome.GARBLED
    return Outcome.ACK


_Read = tuple[_Kind, LongFrame | None, str | None]


def _read(node: _Node, st: _State, read_retries: int) -> Generator[object, Answer | None, _Read]:
    """Read-out of a selected mask, short when the meters take a readout selection; every
    meter selected is back on its standard telegram when this returns."""
    if st.keep_short:
        return (yield from _read_plain(node, st, read_retries, Outcome.ACK))
    asked = Outcome.SILENT
    if st.short_reads and st.short_refused <= st.short_accepted + 1:
        st.probes += 1
        answer = yield _ASK_SHORT
        assert answer is not None
        asked = answer.outcome
        # several E5s garbled together were acknowledgements all the same; a silent meter may
        # have lost our frame, or its E5 got lost: reset it all the same
        st.reset_pending = True
        st.reset_retries = _RESET_RETRIES if asked is not Outcome.SILENT else 0
        if asked is Outcome.GARBLED:
            asked = Outcome.ACK
        if asked is Outcome.ACK:
            st.short_accepted += 1
            if node.weight == 1.0:
                # the whole search mask took it: it stays in force until the search ends
                st.keep_short, st.reset_pending = True, False
    result = yield from _read_plain(node, st, read_retries, asked)
    yield from _restore(st)
    return result


def _ask_all_short(st: _State) -> Generator[object, Answer | None, None]:
    """The readout selection of the fabrication number to every meter selected (the whole
    search mask): later read-outs are short without asking again."""
    if not st.short_reads or st.keep_short:
        return
    st.probes += 1
    answer = yield _ASK_SHORT
    assert answer is not None
    if answer.outcome is not Outcome.SILENT:
        st.short_accepted += 1
        st.keep_short = True


def _restore(st: _State) -> Generator[object, Answer | None, None]:
    """Application reset (CI 50h, EN 13757-3 6.5) of the meters still selected: back to the
    standard telegram, before another selection leaves them out of reach."""
    if not st.reset_pending:
        return
    st.reset_pending = False
    retries = st.reset_retries
    for _ in range(retries + 1):
        st.probes += 1
        answer = yield _RESET
        assert answer is not None
        if answer.outcome is not Outcome.SILENT:
            return  # E5 (several meters' alike) or garbled E5s: it reached them
        if retries:
            # they acknowledged the readout selection, so the reset or its E5 got lost
            st.careful = True


def _read_plain(node: _Node, st: _State, read_retries: int,
                asked: Outcome) -> Generator[object, Answer | None, _Read]:
    """Read-out of a selected mask: FOUND (one meter, confirmed) or COLLISION (with the AND
    hint when the collided answers lined up)."""
    # FCB set: the first REQ_UD2 after a selection (EN 13757-2 5.4); a repeat keeps it.
    request = Request(req_ud2(ADDRESS_NETWORK, fcb=True), Expect.DATA, ADDRESS_NETWORK)
    garbled_before = False
    previous: bytes | None = None  # a first collided short answer, to be ANDed with a second
    attempt, silences = -1, 0
    while attempt < read_retries:
        attempt += 1
        reply = yield request
        assert reply is not None
        if reply.outcome is Outcome.SILENT:
            st.careful = True  # the meter acknowledged, so our request or its answer got lost
            if silences < _PRESENT_RETRIES:
                # a selected meter must answer: silence does not use up a read
                silences += 1
                attempt -= 1
            continue
        if reply.outcome is Outcome.FRAME and isinstance(reply.frame, LongFrame):
            if st.reset_pending and asked is Outcome.SILENT:
                # silent to the readout selection, yet here and answering: it refuses them
                st.short_refused += 1
            if garbled_before:
                st.careful = True  # garbled, then clean: that was noise, not a collision
            address = address_of(reply.frame)
            # ID and fabrication digits are BCD: a hex digit there is noise that kept the checksum
            if address is not None and address[:8].isdigit() and matches(address, node.mask):
                fab = fabrication_of(reply.frame)
                if fab is not None and not fab.isdigit():
                    st.careful = True
                    return _Kind.COLLISION, None, None
                if node.fabrication is None or fab is None or _fab_matches(fab, node.fabrication):
                    yield from _restore(st)
                    confirmed = yield from _confirm(node, address, fab, st)
                    if confirmed:
                        return _Kind.FOUND, reply.frame, None
                    return _Kind.COLLISION, None, None
            st.careful = True  # a good checksum on the wrong address: noise got through
            return _Kind.COLLISION, None, None
        if previous is not None and len(previous) == len(reply.raw):
            # two collided short answers: their AND (noise that set a bit in one is cleared
            # by the other; noise that cleared one only allows more digits)
            both = bytes(x & y for x, y in zip(previous, reply.raw, strict=True))
            if differ_beyond_counters(previous, reply.raw):
                st.careful = True  # the same meters answered alike: noise made the difference
            return _Kind.COLLISION, None, and_hint(both)
        short = asked is Outcome.ACK
        if attempt < read_retries and st.careful:
            # On a noisy line a garbled read-out may be one meter: a collision repeats (the
            # same meters answer the repeat alike), noise rarely does.
            garbled_before = True
            previous = reply.raw if short else None
            continue
        if attempt < read_retries and one_bit_off(reply.raw):
            # Off as by one flipped bit: probably one meter and noise. Selecting the address
            # the frame names tells more cheaply than a second full read-out: a real meter
            # answers, the AND of several addresses matches nobody.
            named = None if short else _named_frame(node, reply.raw)
            if named is None:
                # a short answer costs about what a selection does: read it once more (also
                # when noise hit the ID itself and there is nobody to select)
                garbled_before = True
                previous = reply.raw if short else None
                continue
            yield from _restore(st)
            single = yield from _named_meter(node, named, st)
            if single:
                garbled_before = True
                continue
        hint = and_hint(reply.raw)
        if hint is not None and short and attempt < read_retries:
            # One flipped bit in the ID of a collided answer cannot be seen (the AND spoils the
            # checksum anyway) and would rule out digits that meters have: a short answer is
            # cheap, so it is read twice and the two combined (a clean second answer was one
            # meter and noise)
            garbled_before = True
            previous = reply.raw
            continue
        return _Kind.COLLISION, None, hint
    return _Kind.COLLISION, None, None


def _named_frame(node: _Node, raw: bytes) -> LongFrame | None:
    """The frame a damaged answer still is, when it names an address under ``node`` (BCD ID
    digits); None when noise hit the ID and there is nobody to select."""
    if len(raw) < 19:
        return None
    named = LongFrame(raw[4], raw[5], raw[6], bytes(raw[7:-2]))
    address = address_of(named)
    if address is None or not address[:8].isdigit() or not matches(address, node.mask):
        return None
    return named


def _named_meter(node: _Node, named: LongFrame,
                 st: _State) -> Generator[object, Answer | None, bool]:
    """Whether the meter a damaged frame (``_named_frame``) names answers its exact
    (enhanced) address; it is then the one selected."""
    address = address_of(named)
    assert address is not None
    fab = fabrication_of(named) if st.enhanced else None
    if fab is not None and not fab.isdigit():
        fab = None
    st.probes += 1
    # the ID digits it names, the rest as searched: a flipped bit in the manufacturer,
    # version or medium byte must not make the meter look absent
    answer = yield Request(select_frame(address[:8] + node.mask[8:], fab), Expect.ACK,
                           ADDRESS_NETWORK)
    assert answer is not None
    return answer.outcome is Outcome.ACK


def _confirm(node: _Node, address: str, fab_read: str | None,
             st: _State) -> Generator[object, Answer | None, bool]:
    """Whether the meter that answered really has ``address``.

    Several meters answering one read-out combine as a wired AND; once in a while that AND is
    a frame with a good checksum, carrying the AND of their addresses, and in a delivery batch
    that is often a real meter's number (…50 AND …150 = …50). Selecting the number together
    with the fabrication number the frame carries (enhanced selection) tells: a real meter
    acknowledges, an AND of several matches nobody. Not needed when the mask was exact.
    """
    if "F" not in node.mask[:8] and (node.fabrication is None or _exact(node.fabrication)):
        return True
    fab = node.fabrication if _exact(node.fabrication) else fab_read if st.enhanced else None
    request = Request(select_frame(address, fab), Expect.ACK, ADDRESS_NETWORK)
    for attempt in range(2):  # silence twice: nobody has this address; once may be lost
        st.probes += 1
        answer = yield request
        assert answer is not None
        if answer.outcome is Outcome.ACK:
            if attempt:
                st.careful = True  # the meter is there: the line lost a frame
            return True
    return False


def _exact(fabrication: str | None) -> bool:
    return fabrication is not None and "F" not in fabrication


def _fab_matches(fab: str, mask: str) -> bool:
    return all(m in ("F", f) for m, f in zip(mask, fab, strict=True))


__all__ = ["READOUT_FABRICATION"]
