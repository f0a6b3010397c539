"""Whether a cancel's or replace's OrderID (37) is the order its OrigClOrdID (41) names, and
a status request's (H) the order its ClOrdID (11) names.

FIX 4.4's OrderID is the exchange's own id of the order. A client that sends it with an
OrigClOrdID means one order, so two that disagree say its view of its orders is wrong: the
request is refused as for an unknown order, not acted on for either of them, as ringex refuses
any field it would otherwise drop in silence (review 329); a status request is answered as
for an unknown order, not with the status of the order its ClOrdID names (review 333). OrderID
is optional, and a client that never got an id for the order may send NONE, as ringex's own
reports do then.
"""

from __future__ import annotations

from typing import Final

from procs.gateway.fix import FixMessage, shown

#: An OrderID as sent for an order of no id yet (ringex's reports say so before the ack):
#: as if absent.
NO_ORDER_ID: Final = b"NONE"


def other_order_id(msg: FixMessage, order_id: int, by: int = 41) -> str | None:
    """The refusal's text when ``msg`` (an F or a G; an H with ``by`` 11) carries an OrderID
    (37) that is not ``order_id``, the id of the order its OrigClOrdID (its ClOrdID) names, as
    ringex's reports write it (its decimal, no sign or leading zero; 0: the order has none
    yet); None when 37 is that, absent or NONE."""
    sent = msg.fields.get(37)
    if sent is None or sent == NO_ORDER_ID or (order_id and sent == b"%d" % order_id):
        return None
    name = f"{'OrigClOrdID' if by == 41 else 'ClOrdID'} {shown(msg.fields[by])}"
    own = order_id or "none yet"
    return f"unknown order: OrderID {shown(sent)} is not {name}'s, {own}"
