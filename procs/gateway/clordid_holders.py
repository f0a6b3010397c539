"""Who holds a ClOrdID: the REST API asks before it takes a client order id, so that one
id names one open order of an account, whichever way it came (reviews 47, 49 and 51).

A mixin of ``OrderEntry`` (``orders.py``), which owns the state it names.
"""

from __future__ import annotations

from collections.abc import Callable

from procs.gateway.grouped import GroupedDict
from procs.gateway.order_state import Order, Request


class ClOrdIdHolders:
    live: GroupedDict[tuple[int, bytes], Order, int]
    requests: dict[int, Request]
    #: The account of a session id, logged on or not (the shell looks it up among the
    #: users; None: not known, a removed user's), remembered per session (it never changes;
    #: a logon tells it too).
    account_of: Callable[[int], int | None]
    _session_accounts: dict[int, int | None]

    def holding(self, account: int, cl_ord_id: bytes) -> Order | None:
        """An unfinished order of a session of ``account`` whose ClOrdID is ``cl_ord_id``,
        or will be once a replace in flight lands. Logged on or not: a session that logged
        off without cancel-on-disconnect leaves its orders resting under their ClOrdIDs."""
        for session_id in self.live.groups:
            if self._account_of(session_id) == account:
                found = self.live.get((session_id, cl_ord_id))
                if found is not None:
                    return found
        for r in self.requests.values():  # a replace in flight names its order so
            if (
                r.kind == b"G"
                and r.cl_ord_id == cl_ord_id
                and self._account_of(r.session) == account
            ):
                return r.order
        return None

    def _account_of(self, session_id: int) -> int | None:
        known = self._session_accounts
        if session_id not in known:
            known[session_id] = self.account_of(session_id)
        return known[session_id]
