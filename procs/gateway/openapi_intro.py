"""The OpenAPI document's introduction (``info.description``): how parameters and errors look,
and how a private request is signed; and when each error status is answered (``ERRORS``).
Written from the limits and names the server checks (``rest_params``, ``signing``,
``api_errors``)."""

from __future__ import annotations

from typing import Any

from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway import signing
from procs.gateway.rest_body import BODY_TIMEOUT_S

SIGNING = f"""Private endpoints are signed. Each request carries four headers:

- `{signing.API_KEY}`: the API key (`POST /api/v1/apiKey` makes one);
- `{signing.TIMESTAMP}`: ms since the epoch; accepted from server time minus the receive \
window to server time plus {signing.MAX_AHEAD_MS} ms;
- `{signing.RECV_WINDOW}` (optional): the receive window in ms, up to the gateway's maximum \
(the gateway's default when absent);
- `{signing.SIGNATURE}`: lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of

      f"{{timestamp}}\\n{{recvWindow}}\\n{{METHOD}}\\n{{path}}\\n{{query}}\\n" + body

  where `query` is the query string as sent (without the `?`, empty when none), `body` the \
raw body bytes, and `recvWindow` the window used (the default when the header is absent).

A signature is accepted once: a byte-identical request sent again is refused \
({signing.REPLAYED}), so a retry must carry a new timestamp."""

INFO = f"""The ringex exchange's REST API. Prices and sizes are decimal strings both ways \
(never JSON numbers); parameters go in the query string (GET, DELETE) or in the body as a form \
or a JSON object (POST). At most {rp.MAX_PARAMS} parameters, each value 1 to \
{rp.MAX_VALUE_CHARS} characters (a password {rp.LONG_VALUES["password"]}): an empty one is \
refused, never taken for the default.

Every error is `{{"code": integer, "msg": string}}` with the status below; unknown paths answer \
404 and known paths with another method 405, both with that body. Any `OPTIONS` request is a \
CORS preflight and answers 204.

{SIGNING}"""


def security_schemes() -> dict[str, Any]:
    """The four headers a signed request carries, as OpenAPI security schemes."""

    def header(name: str, description: str) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": name, "description": description}

    return {
        "ApiKey": header(signing.API_KEY, "The API key (`POST /api/v1/apiKey`)."),
        "Timestamp": header(signing.TIMESTAMP, "The request's time, ms since the epoch."),
        "RecvWindow": header(
            signing.RECV_WINDOW, "Optional: how long after its timestamp the request is good (ms)."
        ),
        "Signature": header(signing.SIGNATURE, SIGNING),
    }


#: Every error status the API answers: component name, and when.
ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        f"A parameter is missing ({codes.MANDATORY_PARAM}), malformed, sent twice or empty "
        f"({codes.ILLEGAL_PARAM}), one the endpoint does not take ({codes.UNKNOWN_PARAM}) "
        f"or the order's type does not ({codes.NOT_REQUIRED_PARAM}), "
        f"too many ({codes.TOO_MANY_PARAMS}), a start time after the end time "
        f"({codes.BAD_TIME_RANGE}), an unknown symbol ({codes.BAD_SYMBOL}) or "
        f"interval ({codes.BAD_INTERVAL}), an unknown timeInForce ({codes.INVALID_TIF}), type "
        f"({codes.INVALID_ORDER_TYPE}) or side ({codes.INVALID_SIDE}), more decimals than the "
        f"symbol's precision ({codes.BAD_PRECISION}), off the symbol's tick, lot or size limits "
        f"or past its notional limit ({codes.FILTER_FAILURE}); the exchange refused the order "
        f"({codes.NEW_ORDER_REJECTED}) "
        f"or the cancel ({codes.CANCEL_REJECTED}); no such order ({codes.NO_SUCH_ORDER}); a "
        f"private stream's request that is no WebSocket upgrade ({codes.UNKNOWN}). The "
        "message names the value and the rule.",
    ),
    426: (
        "UpgradeRequired",
        f"A private stream's upgrade of another WebSocket version than 13 ({codes.UNKNOWN}): "
        "Sec-WebSocket-Version names 13.",
    ),
    401: (
        "Unauthorized",
        f"Unknown API key or wrong password ({codes.BAD_CREDENTIALS}); timestamp or signature "
        f"missing or malformed ({signing.UNAUTHORIZED}), outside the receive window "
        f"({signing.OUTSIDE_WINDOW}), bad receive window ({signing.BAD_WINDOW}), wrong "
        f"({signing.BAD_SIGNATURE}) or replayed ({signing.REPLAYED}).",
    ),
    403: ("Forbidden", f"The API key lacks the scope needed ({signing.FORBIDDEN_SCOPE})."),
    404: ("NotFound", f"No such path, for any path not listed here ({codes.UNKNOWN})."),
    405: ("MethodNotAllowed", f"The path exists, the method does not ({codes.UNKNOWN})."),
    408: (
        "RequestTimeout",
        f"The body did not arrive within the gateway's limit, {BODY_TIMEOUT_S:g} s "
        f"({codes.TIMEOUT}).",
    ),
    413: ("PayloadTooLarge", f"The body is over the gateway's limit ({codes.ILLEGAL_PARAM})."),
    429: (
        "TooManyRequests",
        f"Over the client address's, the API key's or the login rate limit "
        f"({codes.TOO_MANY_REQUESTS}), or an order or amend over the account's command rate, "
        f"risk.max_commands_per_s ({codes.TOO_MANY_ORDERS}), the code a batch's entry over it "
        "carries: retry after the seconds in Retry-After.",
    ),
    502: ("BadGateway", f"The market-data process refused the request ({codes.DISCONNECTED})."),
    503: (
        "ServiceUnavailable",
        f"A service behind the API is not enabled or not reachable: market data, the history "
        f"database, or this gateway's private stream slots ({codes.DISCONNECTED}); the port's "
        f"connections, in all or from one address, are at their limit "
        f"({codes.TOO_MANY_REQUESTS}); the API keys could not be read or written, a key not made "
        f"or not revoked (a damaged file, a full disk: {codes.UNKNOWN}).",
    ),
    504: (
        "GatewayTimeout",
        f"No answer from the exchange in time ({codes.TIMEOUT}): the order or cancel may "
        "still execute, ask for its status.",
    ),
}
