"""Who holds a ClOrdID: the REST API asks before it takes a client order id, so that one
id names one open order of an account, whichever way it came (reviews 47, 49 and 51).

A mixin of ``OrderEntry`` (``orders.py``), which owns the state it names.
"""

from __future__ import annotations

from collections.abc import Callable

from procs.gateway.fix import shown
from procs.gateway.grouped import GroupedDict
from procs.gateway.order_state import Order, Request


class ClOrdIdHolders:
    live: GroupedDict[tuple[int, bytes], Order, int]
    requests: dict[int, Request]
    #: The account of a session id, logged on or not (the shell looks it up among the
    #: users; None: not known, a removed user's), remembered per session (it never changes;
    #: a logon tells it too).
    account_of: Callable[[int], int | None]
    #: Whether an open order the REST API placed for the account holds a ClOrdID.
    api_holds: Callable[[int, bytes], bool]
    _session_accounts: dict[int, int | None]
    _account_sessions: dict[int | None, list[int]]  # the sessions of an account known here
    _all_known: bool  # every session with an open order is in ``_session_accounts``

    def _init_holders(self) -> None:
        self._session_accounts = {}
        self._account_sessions = {}
        self._all_known = False  # the orders a restart restores: their sessions looked up once

    def held_elsewhere(self, session_id: int, account: int, cl_ord_id: bytes) -> str:
        """Why ``cl_ord_id`` cannot name a new order (or a replace) of session ``session_id``
        of ``account``: an open order the REST API placed holds it (review 49), or an open
        order of another FIX session of the account (review 195: two orders of one id, and
        an ``origClientOrderId`` named one of them in silence); "" when neither does. The
        session's own ids are its duplicate check's. One dict lookup per other session of
        the account: the hot path's, where ``holding`` scans every session."""
        if self.api_holds(account, cl_ord_id):
            return (
                f"duplicate ClOrdID {shown(cl_ord_id)}: an open order placed through the API "
                "holds it"
            )
        if not self._all_known:
            for other in list(self.live.groups):
                self._account_of(other)
            self._all_known = True
        self._account_of(session_id)
        live = self.live
        for other in self._account_sessions.get(account, ()):
            if other != session_id and (other, cl_ord_id) in live:
                return (
                    f"duplicate ClOrdID {shown(cl_ord_id)}: an open order of another session "
                    "of the account holds it"
                )
        return ""

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
            self._know(session_id, self.account_of(session_id))
        return known[session_id]

    def _know(self, session_id: int, account: int | None) -> None:
        """Remember ``session_id``'s account (a logon's, or the users' answer)."""
        if self._session_accounts.get(session_id, -1) != account:
            self._session_accounts[session_id] = account
            self._account_sessions.setdefault(account, []).append(session_id)
