"""Which id of a client's message a BusinessMessageReject names (BusinessRejectRefID 379):
FIX 4.4's business-level id of the message refused, so that the client can tell which of its
requests it was (reviews 316, 320)."""

from __future__ import annotations

from typing import Final

from procs.gateway.fix import FixMessage

#: A message's own business-level id, which a BusinessMessageReject names (379), by type:
#: an ExecutionReport's ExecID, a list's ListID (not an order's ClOrdID inside it), a
#: Quote's QuoteID, a cross's CrossID, an allocation's AllocID, a request's own id (reviews
#: 316, 320, 322) ...
OWN_IDS: Final = {
    **dict.fromkeys((b"D", b"F", b"G", b"H", b"q", b"9"), 11),
    **dict.fromkeys((b"E", b"K", b"L", b"M", b"N"), 66),
    **dict.fromkeys((b"s", b"t", b"u"), 548),
    **dict.fromkeys((b"J", b"P"), 70),
    **dict.fromkeys((b"AS", b"AT"), 755),
    **{b"8": 17, b"S": 117, b"R": 131, b"V": 262, b"BE": 923, b"AF": 584, b"x": 320},
    **{b"e": 324, b"AD": 568, b"AN": 710, b"AE": 571},
}
#: ... and for another type, the first present of these request ids: ClOrdID,
#: MassStatusReqID, SecurityReqID, SecurityStatusReqID, MDReqID, QuoteReqID, UserRequestID,
#: TradeRequestID, PosReqID.
REQUEST_IDS: Final = (11, 584, 320, 324, 262, 131, 923, 568, 710)


def own_id(msg: FixMessage) -> bytes | None:
    """The business-level id of ``msg`` a BusinessMessageReject names (379), or None."""
    own = OWN_IDS.get(msg.msg_type or b"")
    return msg.get(own) if own else next(filter(None, map(msg.get, REQUEST_IDS)), None)
