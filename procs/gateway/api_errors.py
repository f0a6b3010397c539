"""The REST API's errors: an HTTP status, a venue-style numeric code and a message that names
the offending value (and the limit, where there is one).

The codes follow the most used venue API's numbering (negative, grouped by cause), so client
libraries written against it branch on the same numbers; an order the exchange itself refused
keeps the exchange's ``ResultCode`` name and number in its message.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from procs.common.result_codes import ResultCode

if TYPE_CHECKING:
    from procs.gateway.limits import RateLimiter

#: General
UNKNOWN = -1000
DISCONNECTED = -1001  # a service behind the API (database, market data) is not reachable
TOO_MANY_REQUESTS = -1003
TIMEOUT = -1007
#: an order or amend over the account's command rate (``risk.max_commands_per_s``, the
#: router's ``ACCOUNT_RATE_LIMITED``): 429, to be sent again (review 312: it was -2010, 400,
#: which a client takes as refused for good)
TOO_MANY_ORDERS = -1015
BAD_TIME_RANGE = -1023  # startTime after endTime
ILLEGAL_PARAM = -1100  # a value that does not parse
TOO_MANY_PARAMS = -1101
MANDATORY_PARAM = -1102
UNKNOWN_PARAM = -1104
#: a parameter, or its value, the order's type does not take (stopPrice on a LIMIT, Binance's
#: "sent when not required": review 306, it was -1100, which says malformed)
NOT_REQUIRED_PARAM = -1106
BAD_SYMBOL = -1121
BAD_INTERVAL = -1120
FILTER_FAILURE = -1013  # tick, lot, size limits
#: more decimals than the symbol's pricePrecision or quantityPrecision (review 315: -1013)
BAD_PRECISION = -1111
#: an unknown timeInForce, type or side (review 315: each was -1100, as malformed)
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
#: Orders
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
#: The exchange's refusals that a client is told as "unknown order": another account's order
#: is not to be told apart from none.
NOT_YOURS = (ResultCode.UNKNOWN_ORDER, ResultCode.NOT_ORDER_OWNER)
#: Keys (the signing module has the signature codes)
BAD_CREDENTIALS = -2014


#: A request a stopping gateway could not wait on any more (``RestApi.stop``: 504, -1007).
STOPPED_UNANSWERED = (
    "the gateway stopped before the exchange answered: the request may still execute, "
    "ask for its status"
)


class ApiError(Exception):
    """Answered as ``{"code": code, "msg": msg}`` with HTTP ``status`` and ``headers``;
    ``retry_after_s`` adds a ``Retry-After`` header (429), in whole seconds rounded up."""

    def __init__(
        self,
        status: int,
        code: int,
        msg: str,
        *,
        retry_after_s: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})
        if retry_after_s is not None:
            self.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))

    def body(self) -> dict[str, int | str]:
        return {"code": self.code, "msg": self.msg}


def bad_request(code: int, msg: str) -> ApiError:
    return ApiError(400, code, msg)


def order_refused(code: ResultCode, otherwise: int, refused: str, rate_per_s: int) -> ApiError:
    """The exchange's refusal ``code`` of an order or amend (``refused``: its text, its
    values): 400 ``otherwise``, but 400 ``FILTER_FAILURE`` for a notional past
    ``risk.max_order_notional`` (exchangeInfo's NOTIONAL filter: review 315, it was
    ``otherwise``), and 429 ``TOO_MANY_ORDERS`` over the account's command rate, to be sent
    again (review 312: it was 400), ``Retry-After`` the time the account's bucket takes to
    give back one command, 1 / ``rate_per_s`` (a second at least)."""
    if code == ResultCode.NOTIONAL_TOO_LARGE:
        return bad_request(FILTER_FAILURE, refused)
    if code != ResultCode.ACCOUNT_RATE_LIMITED:
        return bad_request(otherwise, refused)
    return ApiError(
        429,
        TOO_MANY_ORDERS,
        f"Too many new orders; current limit is {rate_per_s} orders per SECOND "
        f"(risk.max_commands_per_s: the account's new orders, amends and mass cancels over all "
        f"its keys, gateways and FIX sessions): {refused}",
        retry_after_s=1 / rate_per_s,
    )


def throttle(limiter: RateLimiter, key: str, what: str, cost: int = 1) -> None:
    """429 with the seconds until ``key`` may go on, when it is over ``limiter``'s rate
    (``cost`` of it taken: a batch of orders spends one each)."""
    retry = limiter.take(key, time.monotonic(), cost)
    if retry:
        raise ApiError(
            429,
            TOO_MANY_REQUESTS,
            f"too many {what}: the limit is {limiter.rate_per_s:g}/s",
            retry_after_s=retry,
        )
