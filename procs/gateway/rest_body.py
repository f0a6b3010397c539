"""A REST request's body as parameters: a form, or a JSON object of scalars, each value as
text; a key sent twice shows as two pairs (``RestApi.params`` refuses it, as for a query)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError, bad_request
from procs.gateway.rest_request import RestRequest

_decode = msgspec.json.Decoder(dict[str, str | int | float | bool]).decode
_decode_raw = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_number = msgspec.json.Decoder(int | float).decode
#: Longest a request's body may take to arrive (s): aiohttp waits for a body for ever, so a
#: client trickling one byte at a time would hold a connection and a handler as long as it
#: liked, and enough of them the gateway's file descriptors.
BODY_TIMEOUT_S = 10.0


async def read_body(request: RestRequest, timeout_s: float) -> bytes:
    """``request``'s body (b"" when it has none), or 408 when it took over ``timeout_s``.

    A body that has already arrived whole (an order's usually comes in the headers' packet;
    a second call finds it read) is taken without arming the timer: ``asyncio.timeout``
    schedules and cancels a timer handle each time, ~5% of the gateway's CPU per request."""
    if not request.body_exists:
        return b""
    if request.content.is_eof():  # every byte is buffered: the read cannot wait
        return await request.read()
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        size = request.content_length
        what = "chunked request body" if size is None else f"request body of {size} bytes"
        raise ApiError(
            408, codes.TIMEOUT, f"{what} did not arrive within {timeout_s:g} s"
        ) from None


def body_pairs(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """``body``'s (name, value) pairs, or a 400 naming what is wrong with it."""
    if not content_type.endswith("json"):
        return _form(body.decode(errors="replace"))
    try:
        decoded = _decode(body)
    except msgspec.DecodeError as exc:
        huge = _out_of_range(body) if isinstance(exc, msgspec.ValidationError) else None
        if huge is not None:  # a JSON object, of a number no float or int64 holds
            raise bad_request(
                codes.ILLEGAL_PARAM,
                f"parameter {huge[0][:64]!r} is the JSON number {huge[1]}, out of range: "
                "decimals are strings",
            ) from None
        raise bad_request(codes.ILLEGAL_PARAM, f"body is not a JSON object: {exc}") from None
    except UnicodeDecodeError as exc:
        raise bad_request(
            codes.ILLEGAL_PARAM, f"body is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        pairs = [(k, _text(k, v)) for k, v in decoded.items()]
    except _JsonNumberError as number:  # named as sent: the float may not be (review 144)
        raise bad_request(
            codes.ILLEGAL_PARAM,
            f"parameter {number.name[:64]!r} is the JSON number {_sent(body, number)}: "
            "decimals are strings",
        ) from None
    if len(decoded) < body.count(b":"):  # maybe a key twice: count them
        pairs += json_repeats(body, decoded)
    return pairs


def _out_of_range(body: bytes) -> tuple[str, str] | None:
    """The first key of the JSON object ``body`` whose value is a number msgspec cannot hold
    (``1e400``, 5,000 digits: "Number out of range - at `$[...]`" names no key), with the
    number as sent (its first 40 characters and its length); None if none is."""
    try:
        raw = _decode_raw(body)
    except (msgspec.DecodeError, RecursionError):  # (nested too deep: the generic 400)
        return None
    for name, value in raw.items():
        text = bytes(value)
        if text[:1] not in b"-0123456789":
            continue
        try:
            _decode_number(text)
        except msgspec.ValidationError:
            shown = text.decode()
            if len(shown) > 40:
                shown = f"{shown[:40]}... ({len(shown)} characters)"
            return name, shown
    return None


def _form(text: str) -> list[tuple[str, str]]:
    """A form body's pairs: a plain split when nothing is escaped (4x cheaper than
    ``parse_qsl``, and what every order from a script looks like). A blank value, or a blank
    name, is kept either way, for the checks to refuse (review 91: the plain split dropped
    ``=junk``, which ``parse_qsl`` keeps); only an empty field (``a=1&&b=2``) is no pair."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    return [(name, value) for name, _, value in (p.partition("=") for p in text.split("&") if p)]


def json_repeats(body: bytes, decoded: dict[str, Any]) -> list[tuple[str, str]]:
    """A pair for each key the JSON object ``body`` repeats (``decoded`` kept its last
    value): the repeat check of ``params`` then refuses it, as for a query or form."""
    try:
        keys: list[str] = json.loads(body, object_pairs_hook=lambda pairs: [k for k, _ in pairs])
    except RecursionError:  # a value nested deeper than Python's json recurses
        raise bad_request(codes.ILLEGAL_PARAM, "body is nested too deeply") from None
    if len(keys) == len(decoded):
        return []
    seen: set[str] = set()
    repeats = []
    for key in keys:  # each later sending of a key: the one the refusal names
        if key in seen:
            repeats.append((key, ""))
        seen.add(key)
    return repeats


def checked_params(pairs: list[tuple[str, str]], accepted: frozenset[str]) -> dict[str, str]:
    """``pairs`` (the query's, then the body's) as parameters: none sent twice (in the query
    twice, or in the query and the body), within the size limits, each one of the
    ``accepted`` names (``rest_params``)."""
    params = dict(pairs)
    if len(params) != len(pairs):
        raise bad_request(codes.ILLEGAL_PARAM, f"parameter {repeated(pairs)[:64]!r} is sent twice")
    rp.check_params(params)
    rp.only(params, accepted)
    return params


def repeated(pairs: list[tuple[str, str]]) -> str:
    """The first name that comes twice in ``pairs``."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return name
        seen.add(name)
    return ""


class _JsonNumberError(Exception):
    """A JSON body's float, refused: ``body_pairs`` names it as the body spells it."""

    def __init__(self, name: str, value: float) -> None:
        self.name, self.value = name, value


def _text(name: str, value: str | int | float | bool) -> str:
    """A JSON body's value as the parameter's text. A float is refused: prices and sizes are
    strings, and binary rounding could put a price on the tick the client's digits missed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise _JsonNumberError(name, value)
    return str(value)


def _sent(body: bytes, number: _JsonNumberError) -> str:
    """The JSON number of ``number``'s key as ``body`` spells it (its first 40 characters),
    or the float decoded when the key is escaped in the body (the spelling is not found)."""
    key = json.dumps(number.name).encode()  # as a plain key is written: no escapes
    found = re.search(re.escape(key) + rb"\s*:\s*(-?[0-9][0-9.eE+-]*)", body)
    if found is None:
        return repr(number.value)
    text = found[1].decode()
    return text if len(text) <= 40 else text[:40] + "..."
