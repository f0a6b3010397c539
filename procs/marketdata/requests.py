"""What a client may send: ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS",
"params": [...], "id": N}``, parsed and checked, and the answers to it.

A malformed request is answered with an error naming the problem; the connection stays open.
Errors are ``{"id": N, "error": {"code": C, "msg": "..."}}`` with C an ``ErrorCode``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgspec

from procs.marketdata.streams import Stream, StreamError, parse_stream


class ErrorCode(IntEnum):
    """Binance's codes (its streams' "Error Messages"), which a Binance client reads: 2 an
    invalid request, 3 invalid JSON. Its 0 (unknown property) and 1 (a property's value not a
    boolean) answer SET_PROPERTY and GET_PROPERTY, which ringex does not take (2, an unknown
    method). Our finer reasons are aliases of Binance's code for them (review 334: invalid JSON
    was 1, an unknown stream 3, too many subscriptions 4)."""

    INVALID_REQUEST = 2  # JSON, but not a request we know
    INVALID_JSON = 3  # not JSON, or binary
    # Binance: "Invalid request: invalid stream"
    INVALID_STREAM = 2  # a stream name that is malformed or unknown
    TOO_MANY_SUBSCRIPTIONS = 2  # past max_subscriptions (Binance has no code of its own)


RequestId = int | str | None


@dataclass(frozen=True)
class Request:
    method: str  # SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS
    streams: tuple[Stream, ...]
    id: RequestId


class RequestError(ValueError):
    def __init__(
        self, code: ErrorCode, message: str, request_id: RequestId = None, names: int = 0
    ) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id
        self.names = names  # the distinct stream names it carried, where read: what it cost


METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
MAX_PARAMS = 1024
#: The most of a client's value an error message repeats.
SHOWN_CHARS = 64

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _decode_fault(exc: msgspec.DecodeError) -> str:
    """What the decoder refused, with the limit where it is one of size (review 277's lead:
    an ``id`` of 5,000 digits was "Integer value out of range", naming no limit)."""
    said = str(exc)
    if said.startswith(("Integer value out of range", "Number out of range")):
        return (
            f"{said} (an integer has at most {sys.get_int_max_str_digits():,} digits, a "
            f"number's size is at most {sys.float_info.max:.1e})"
        )
    return said


def parse_request(raw: str | bytes, symbols: frozenset[str]) -> Request:
    """The request in ``raw``; raises ``RequestError`` that says what is wrong with it."""
    if isinstance(raw, bytes):
        raise RequestError(ErrorCode.INVALID_JSON, "binary frames are not requests; send text")
    try:
        msg: Any = _decode(raw)
    except msgspec.DecodeError as exc:
        raise RequestError(ErrorCode.INVALID_JSON, f"invalid JSON: {_decode_fault(exc)}") from None
    except RecursionError:
        raise RequestError(ErrorCode.INVALID_JSON, "invalid JSON: nested too deeply") from None
    except UnicodeEncodeError:  # a lone surrogate (websockets refuses such a frame itself: 138)
        raise RequestError(ErrorCode.INVALID_JSON, "invalid JSON: not UTF-8") from None
    if not isinstance(msg, dict):
        raise RequestError(
            ErrorCode.INVALID_REQUEST, f"a request is a JSON object, got {type(msg).__name__}"
        )
    request_id = msg.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, int | str)
    ):
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            f"id must be an integer, a string or null, got {type(request_id).__name__}",
        )
    unknown = sorted(set(msg) - {"method", "params", "id"})
    if unknown:
        names = ", ".join(shown(name) for name in unknown[:4])
        more = f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
        raise RequestError(ErrorCode.INVALID_REQUEST, f"unknown field(s) {names}{more}", request_id)
    method = msg.get("method")
    if method not in METHODS:
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            f"method {shown(method)} is not one of {', '.join(METHODS)}",
            request_id,
        )
    params = msg.get("params", [])
    if not isinstance(params, list):
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            f"params must be a list of stream names, got {type(params).__name__}",
            request_id,
        )
    if len(params) > MAX_PARAMS:
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            f"params has {len(params)} entries, at most {MAX_PARAMS}",
            request_id,
        )
    if method == "LIST_SUBSCRIPTIONS":
        return Request(method, (), request_id)
    if not params:
        raise RequestError(ErrorCode.INVALID_REQUEST, f"{method} needs params", request_id)
    # a name repeated is parsed (and subscribed) once (review 47: 1,024 of one name cost the
    # loop a millisecond); what is not a string is kept for parse_stream to refuse
    seen: set[str] = set()
    distinct = []
    for p in params:
        if isinstance(p, str):
            if p in seen:
                continue
            seen.add(p)
        distinct.append(p)
    try:
        streams = tuple(parse_stream(p, symbols) for p in distinct)
    except StreamError as exc:
        raise RequestError(ErrorCode.INVALID_STREAM, str(exc), request_id, len(distinct)) from None
    return Request(method, streams, request_id)


def shown(value: object) -> str:
    """A client's value in an error, cut short: an error never reflects kilobytes back (one
    nested too deeply to show is named by its type: review 138)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"
    if len(text) <= SHOWN_CHARS:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[:SHOWN_CHARS]}... ({size} characters)"


def cut(text: str) -> str:
    """A client's text (a path) in an error as it is, cut short as ``shown`` cuts."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def result(request_id: RequestId, value: object = None) -> bytes:
    return _encode({"result": value, "id": request_id})


def error(code: ErrorCode, message: str, request_id: RequestId = None) -> bytes:
    return _encode({"error": {"code": int(code), "msg": message}, "id": request_id})
