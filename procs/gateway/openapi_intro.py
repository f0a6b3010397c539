"""The OpenAPI document's introduction (``info.description``): how parameters and errors look,
and how a private request is signed, written from the limits and names the server checks
(``rest_params``, ``signing``)."""

from __future__ import annotations

from typing import Any

from procs.gateway import rest_params as rp
from procs.gateway import signing

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
