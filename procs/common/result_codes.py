"""Result codes: one enum for every business reject, with a numeric range per stage.

Expected rejects travel as codes inside records (``Rejected.code``); broken invariants raise
and crash the process instead (STYLE.md, habit 7). The range says which stage refused:

    0          OK
    1000-1999  gateway   (message, session, limits)
    2000-2999  router    (accounts, risk, sequencing)
    3000-3999  matcher   (book rules, order state)
"""

from __future__ import annotations

from enum import IntEnum


class ResultCode(IntEnum):
    OK = 0

    # gateway
    # 1000, 1005-1007: unused (a gateway answers malformed input, its own rate limits and
    # logons in its protocol's terms: a FIX Reject or Logout, a REST error code), and 1002-1004
    # once the tick/lot/range codes (the matcher's now, 3010-3012)
    UNKNOWN_SYMBOL = 1001

    # router
    UNKNOWN_ACCOUNT = 2000
    INSUFFICIENT_BALANCE = 2001
    # 2002-2003: unused (no account is disabled; an overloaded router waits, it never refuses)
    ACCOUNT_EXISTS = 2004
    UNKNOWN_ASSET = 2005
    DUPLICATE_TRANSFER = 2006
    TOO_MANY_OPEN_ORDERS = 2007
    NOTIONAL_TOO_LARGE = 2008
    ACCOUNT_RATE_LIMITED = 2009
    DUPLICATE_CLIENT_ORDER_ID = 2010
    NO_REFERENCE_PRICE = 2011
    INVALID_AMOUNT = 2012
    BALANCE_LIMIT = 2013  # a deposit would take the asset's total over 2**63 - 1
    #: refused before a router restart that lost its reply (the reason is not kept): read
    #: again, it is not decided on a state its later commands changed (``reread.py``)
    REFUSED_BEFORE_RESTART = 2014
    #: an operator's command (an account, a transfer, a halt, every account's mass cancel)
    #: on a trading gateway's ring: only the admin ring (gateway 0) carries them (review 343)
    NOT_PERMITTED = 2015

    # matcher
    UNKNOWN_ORDER = 3000
    SYMBOL_HALTED = 3001
    POST_ONLY_WOULD_TAKE = 3002
    # 3003: unused (a FOK that cannot fill all is OrderDone(EXPIRED), as venues report it)
    PRICE_OUT_OF_BAND = 3004
    NO_LIQUIDITY = 3005
    INVALID_PRICE = 3006
    INVALID_QTY = 3007
    NOT_ORDER_OWNER = 3008
    INVALID_ORDER = 3009
    PRICE_NOT_ON_TICK = 3010
    QTY_NOT_ON_LOT = 3011
    QTY_OUT_OF_RANGE = 3012  # below the symbol's min_qty or above its max_qty

    @property
    def stage(self) -> str:
        """Which stage issued the code: "ok", "gateway", "router" or "matcher"."""
        return {0: "ok", 1: "gateway", 2: "router", 3: "matcher"}[self.value // 1000]
