"""What a collided or damaged answer tells the secondary search (``scan``).

Slaves send a 0 by drawing current, so answers that start together reach the master as the
AND of their bytes (EN 13757-2 physical layer): a collided RSP_UD that still has the shape of
one frame carries the AND of the meters' ID and fabrication digits. Noise does what the AND
cannot: it sets bits, breaks the bytes every answer shares, or damages one answer by one bit.
"""

from __future__ import annotations

DIGITS = "0123456789"  # ID and fabrication digits are BCD (EN 13757-3 7.2); F is the wildcard

# the answer to a REQ_UD2 after the readout selection of the fabrication number: long header
# (12 bytes after CI) and the record 0C 78 + 4 BCD bytes, in a long frame
SHORT_ANSWER = 9 + 12 + 6


def differ_beyond_counters(a: bytes, b: bytes) -> bool:
    """Two answers of the same meters to the same request differ only in the access number
    (which each answer advances), the status byte and the checksum; a short answer's other
    bytes are fixed, so any other difference is noise."""
    if len(a) != SHORT_ANSWER:
        return False
    return any(x != y for i, (x, y) in enumerate(zip(a, b, strict=True))
               if i not in (15, 16, len(a) - 2))


def one_bit_off(raw: bytes) -> bool:
    """A long frame that one flipped bit makes whole (start, L fields, stop byte, checksum). A
    wired AND of different answers is off by anything, and cannot break the bytes that all
    answers share (start, L, stop), so such a frame is one answer and noise."""
    if len(raw) < 9 or len(raw) > 261:
        return False
    if is_whole(raw):
        return False  # not damaged at all (the caller saw it as garbled for another reason)
    buf = bytearray(raw)
    for i in range(len(buf)):
        for k in range(8):
            buf[i] ^= 1 << k
            whole = is_whole(buf)
            buf[i] ^= 1 << k
            if whole:
                return True
    return False


def is_whole(b: bytes | bytearray) -> bool:
    return (b[0] == 0x68 and b[3] == 0x68 and b[1] == b[2] and len(b) == b[1] + 6
            and b[-1] == 0x16 and sum(b[4:-2]) & 0xFF == b[-2])


def and_hint(raw: bytes) -> str | None:
    """The meter-number digits of a collided read-out, when it is a byte-aligned wired AND.

    Slaves send a 0 by drawing current, so answers that start together reach the master as
    the AND of their bytes (EN 13757-2 physical layer). When the garbled answer still has the
    shape of one RSP_UD (start bytes, equal L fields, stop byte where L puts it, CI 72h), the
    answers were aligned and its ID field is the AND of the meters' IDs: a meter's digit at a
    position has every bit of the AND's digit set. Answers that did not line up (slaves with
    different answer delays) fail the shape test and give no hint.
    """
    if (len(raw) < 19 or raw[0] != 0x68 or raw[3] != 0x68 or raw[1] != raw[2]
            or len(raw) != raw[1] + 6 or raw[-1] != 0x16 or raw[6] != 0x72):
        return None
    digits = raw[10:6:-1].hex().upper()
    if not all(c in DIGITS for c in digits):
        return None
    if len(raw) == SHORT_ANSWER and raw[19:21] == b"\x0c\x78":
        # a short read-out: the fabrication number's AND follows (checked, not split on)
        fab = raw[24:20:-1].hex().upper()
        if all(c in DIGITS for c in fab):
            digits += fab
    return digits


# P(two BCD digits differ | their AND is h), h = 0..9, for uniformly drawn digits; 7 and 9 are
# their own only superset, so they never differ (kept positive to be a divisor).
DIFFER = (50 / 51, 16 / 17, 8 / 9, 2 / 3, 8 / 9, 2 / 3, 2 / 3, 1e-9, 2 / 3, 1e-9)


def candidates(hint_digit: str) -> list[str]:
    bits = int(hint_digit)
    return [d for d in DIGITS if int(d) & bits == bits]


def narrow(mask: str, hint: str, weight: float, *, batch: bool) -> list[tuple[str, float]]:
    """The children of an 8-digit ``mask`` (F = wildcard) that the AND digits ``hint`` allow,
    with their share of the search space."""
    digits = list(mask)
    free = [p for p in range(8) if digits[p] == "F"]
    if not free:
        return []
    options = {p: candidates(hint[p]) for p in free}
    for p in free:
        if len(options[p]) == 1:
            digits[p] = options[p][0]
            weight /= len(DIGITS)
    open_positions = [p for p in free if len(options[p]) > 1]
    if not open_positions:
        # every digit is known: all the meters share it; one child, the full number
        return [("".join(digits), weight)]
    # Fewest probes per position that separates: the AND's digit also says how likely two
    # meters differ there (an AND of 3 is 3&3, 3&7 or 7&3: two of three pairs differ).
    # The first split of a whole meter number is on the last digit all the same: meters of
    # one delivery batch share their leading digits and differ there, whatever their AND says.
    if batch and len(free) == 8:
        pos = max(open_positions)
    else:
        pos = min(open_positions, key=lambda p: (len(options[p]) / DIFFER[int(hint[p])], p))
    out = []
    for d in options[pos]:
        digits[pos] = d
        out.append(("".join(digits), weight / len(DIGITS)))
    return out


__all__ = ["DIFFER", "DIGITS", "SHORT_ANSWER", "and_hint", "candidates", "differ_beyond_counters",
           "is_whole", "narrow", "one_bit_off"]
