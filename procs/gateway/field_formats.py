"""FIX 4.4 value formats (INT, SEQNUM, FLOAT, ...) as checks of a value's bytes, and the
ranges ringex takes each in: ``dictionary.py`` validates every field with them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from procs.gateway.fix import parse_utc_timestamp


def _int(v: bytes) -> bool:
    return v.isdigit() or (v[:1] == b"-" and v[1:].isdigit())


def _positive(v: bytes) -> bool:
    return v.isdigit()


def _float(v: bytes) -> bool:
    body = v[1:] if v[:1] == b"-" else v
    whole, _, frac = body.partition(b".")
    return bool(whole or frac) and (not whole or whole.isdigit()) and (not frac or frac.isdigit())


def _char(v: bytes) -> bool:
    return len(v) == 1


def _bool(v: bytes) -> bool:
    return v in (b"Y", b"N")


def _string(v: bytes) -> bool:
    return True


def _timestamp(v: bytes) -> bool:
    return parse_utc_timestamp(v) is not None


INT, SEQNUM, FLOAT, CHAR, BOOL, STRING, TIMESTAMP = (
    _int,
    _positive,
    _float,
    _char,
    _bool,
    _string,
    _timestamp,
)

Format = Callable[[bytes], bool]

#: The longest number taken, in characters: no price, size or count needs more, and ``int``
#: of a longer string costs quadratic time (Python refuses past 4300 digits).
MAX_NUMBER_CHARS: Final = 40
#: The largest sequence number (and value of any other SEQNUM field) taken: a session store
#: keeps them in unsigned 64-bit words, and a larger one is refused rather than wrapped.
MAX_SEQNUM: Final = 2**63 - 1
SAFE_SEQNUM_DIGITS: Final = len(str(MAX_SEQNUM)) - 1  # any number this long is below it
_NUMERIC: Final = frozenset((INT, SEQNUM, FLOAT))
#: The longest ClOrdID (11) and OrigClOrdID (41) taken: the REST API's limit on its ids, so
#: an order's is one ``origClientOrderId`` can name (a FIX order's id is kept with it, in the
#: order log and among the finished orders: up to ``max_message_bytes`` before, review 151).
MAX_ID_CHARS: Final = 64
IDS: Final = frozenset((11, 41))
#: INT fields taken in a SEQNUM's range, 0 to ``MAX_SEQNUM``: HeartBtInt (108), seconds. FIX
#: 4.4 types it INT, so -5 is well formed and out of range (373=5, as QuickFIX refuses it),
#: not a wrong format (373=6, review 333).
NOT_NEGATIVE: Final = frozenset((108,))


def out_of_range(fmt: Format, value: bytes, tag: int = 0) -> str | None:
    """Why ``value`` of field ``tag``, which has the format ``fmt``, is out of range (said
    after the field's name), or None."""
    if tag in IDS and len(value) > MAX_ID_CHARS:
        return f"has {len(value)} characters, more than {MAX_ID_CHARS}"
    if fmt not in _NUMERIC:
        return None
    if len(value) > MAX_NUMBER_CHARS:
        return f"has {len(value)} characters, more than {MAX_NUMBER_CHARS}"
    if tag in NOT_NEGATIVE and value[:1] == b"-" and value[1:].strip(b"0"):  # ("-0" is 0)
        return f"{value.decode()} is out of range: below 0"
    seqnum = fmt is SEQNUM or tag in NOT_NEGATIVE
    if seqnum and len(value) > SAFE_SEQNUM_DIGITS and int(value) > MAX_SEQNUM:
        return f"{value.decode()} is above {MAX_SEQNUM}"
    return None
