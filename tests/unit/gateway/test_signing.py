"""Request signing: the exact payload, sign/verify round trips, that any change breaks the
signature, window edges and clock skew, header validation messages, and replay refusal with
its bounded memory."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procs.gateway.signing import (
    BAD_SIGNATURE,
    BAD_WINDOW,
    FORBIDDEN_SCOPE,
    MAX_AHEAD_MS,
    OUTSIDE_WINDOW,
    REPLAYED,
    UNAUTHORIZED,
    AuthError,
    Verifier,
    payload,
    require_scope,
    sign,
)

SECRET = "ab" * 32
NOW = 1_700_000_000_000
PATH = "/api/v1/order"
QUERY = "symbol=BTC-USD&side=BUY"
BODY = b'{"qty":"1.5"}'


def verifier(capacity: int = 1_000_000) -> Verifier:
    return Verifier(
        max_recv_window_ms=60_000, default_recv_window_ms=5_000, replay_capacity=capacity
    )


def call(
    v: Verifier,
    ts: int = NOW,
    window: int | None = None,
    *,
    now: int = NOW,
    body: bytes = BODY,
) -> None:
    """Sign and verify one request the way a correct client would."""
    win = v.default_recv_window_ms if window is None else window
    sig = sign(SECRET, ts, win, "POST", PATH, QUERY, body)
    recv = None if window is None else str(window)
    v.verify(SECRET, str(ts), recv, sig, "POST", PATH, QUERY, body, now)


def refusal(code: int, action: Callable[[], None]) -> str:
    """The message of the AuthError ``action`` raises, checking its code."""
    with pytest.raises(AuthError) as info:
        action()
    assert info.value.code == code, info.value.msg
    assert str(info.value) == info.value.msg
    return info.value.msg


def test_payload_is_exact() -> None:
    assert payload(NOW, 5000, "post", PATH, QUERY, BODY) == (
        b"1700000000000\n5000\nPOST\n/api/v1/order\nsymbol=BTC-USD&side=BUY\n" + BODY
    )
    assert payload(1, 2, "GET", "/p", "", b"") == b"1\n2\nGET\n/p\n\n"


def test_sign_is_hmac_sha256_hex_of_payload() -> None:
    expected = hmac.new(
        SECRET.encode(), payload(NOW, 5000, "POST", PATH, QUERY, BODY), hashlib.sha256
    ).hexdigest()
    assert sign(SECRET, NOW, 5000, "post", PATH, QUERY, BODY) == expected
    assert expected == expected.lower() and len(expected) == 64


def test_accepts_default_and_explicit_window() -> None:
    v = verifier()
    call(v)
    call(v, window=60_000)
    call(v, window=1)
    assert len(v) == 3


_text = st.text(max_size=40)


@given(
    secret=st.text(min_size=1, max_size=64),
    ts_back=st.integers(0, 5_000),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    path=_text,
    query=_text,
    body=st.binary(max_size=200),
)
def test_round_trip(
    secret: str, ts_back: int, method: str, path: str, query: str, body: bytes
) -> None:
    v = verifier()
    ts = NOW - ts_back
    sig = sign(secret, ts, 5_000, method, path, query, body)
    v.verify(secret, str(ts), None, sig, method, path, query, body, NOW)


@given(
    field=st.sampled_from(["method", "path", "query", "body", "timestamp", "window", "secret"]),
    junk=st.text(min_size=1, max_size=8),
)
def test_any_change_breaks_the_signature(field: str, junk: str) -> None:
    """A signature made for one request never verifies another (nor with another secret)."""
    req: dict[str, object] = {
        "secret": SECRET,
        "method": "POST",
        "path": PATH,
        "query": QUERY,
        "body": BODY,
        "timestamp": NOW - 10,
        "window": 5_000,
    }
    sig = sign(SECRET, NOW - 10, 5_000, "POST", PATH, QUERY, BODY)
    old = req[field]
    if field == "body":
        req["body"] = BODY + junk.encode()
    elif field == "timestamp":
        req["timestamp"] = NOW - 11 - len(junk)
    elif field == "window":
        req["window"] = 5_000 + len(junk)
    elif field == "method":
        req["method"] = "PUT" if junk == "x" else "GET"
    else:
        req[field] = f"{old}{junk}"
    v = verifier()
    with pytest.raises(AuthError) as info:
        v.verify(
            str(req["secret"]),
            str(req["timestamp"]),
            str(req["window"]),
            sig,
            str(req["method"]),
            str(req["path"]),
            str(req["query"]),
            req["body"],  # type: ignore[arg-type]
            NOW,
        )
    assert info.value.code == BAD_SIGNATURE
    assert len(v) == 0  # a refused request is not remembered


def test_method_case_does_not_matter() -> None:
    v = verifier()
    sig = sign(SECRET, NOW, 5_000, "delete", PATH, QUERY, b"")
    v.verify(SECRET, str(NOW), None, sig, "DELETE", PATH, QUERY, b"", NOW)


def test_window_edges_and_skew() -> None:
    v = verifier()
    call(v, ts=NOW - 5_000)  # oldest accepted: now - recvWindow
    call(v, ts=NOW + MAX_AHEAD_MS)  # furthest ahead accepted: 1 s
    call(v, ts=NOW - 100, window=100)
    msg = refusal(OUTSIDE_WINDOW, lambda: call(v, ts=NOW - 5_001))
    assert msg == (
        f"timestamp {NOW - 5_001} is outside the receive window: server time {NOW}, "
        f"recvWindow 5000 ms, accepted {NOW - 5_000}..{NOW + 1_000}"
    )
    msg = refusal(OUTSIDE_WINDOW, lambda: call(v, ts=NOW + MAX_AHEAD_MS + 1))
    assert f"timestamp {NOW + 1_001}" in msg and f"server time {NOW}" in msg
    refusal(OUTSIDE_WINDOW, lambda: call(v, ts=NOW - 101, window=100))


@pytest.mark.parametrize("value", ["0", "60001", "abc", "-5", "1.5", "", " 5", "\u0665", "9" * 40])
def test_bad_window_names_value_and_limit(value: str) -> None:
    v = verifier()
    sig = sign(SECRET, NOW, 5_000, "POST", PATH, QUERY, BODY)
    msg = refusal(
        BAD_WINDOW, lambda: v.verify(SECRET, str(NOW), value, sig, "POST", PATH, QUERY, BODY, NOW)
    )
    assert "must be an integer in 1..60000 ms" in msg
    assert repr(value[:32]).strip("'") in msg


@pytest.mark.parametrize("value", [None, "", "abc", "-1", "1e12", " 1", "\uff11\uff12", "9" * 17])
def test_bad_timestamp_is_unauthorized(value: str | None) -> None:
    v = verifier()
    sig = sign(SECRET, NOW, 5_000, "POST", PATH, QUERY, BODY)
    msg = refusal(
        UNAUTHORIZED, lambda: v.verify(SECRET, value, None, sig, "POST", PATH, QUERY, BODY, NOW)
    )
    assert "X-RINGEX-TIMESTAMP must be an integer" in msg


@pytest.mark.parametrize("value", [None, "", "ab" * 31, "ab" * 33, "é" * 64, "z" * 64, "upper"])
def test_bad_signature_format_is_unauthorized(value: str | None) -> None:
    v = verifier()
    if value == "upper":
        value = sign(SECRET, NOW, 5_000, "POST", PATH, QUERY, BODY).upper()
    msg = refusal(
        UNAUTHORIZED,
        lambda: v.verify(SECRET, str(NOW), None, value, "POST", PATH, QUERY, BODY, NOW),
    )
    assert "X-RINGEX-SIGNATURE must be 64 lower-case hex characters" in msg


def test_wrong_signature_is_bad_signature() -> None:
    v = verifier()
    msg = refusal(
        BAD_SIGNATURE,
        lambda: v.verify(SECRET, str(NOW), None, "0" * 64, "POST", PATH, QUERY, BODY, NOW),
    )
    assert msg.startswith("signature does not match")


def test_long_values_are_cut_in_messages() -> None:
    v = verifier()
    msg = refusal(
        UNAUTHORIZED,
        lambda: v.verify(SECRET, "x" * 5_000, None, "0" * 64, "GET", "/", "", b"", NOW),
    )
    assert len(msg) < 200


def test_replay_refused_until_it_expires() -> None:
    v = verifier()
    call(v)
    msg = refusal(REPLAYED, lambda: call(v, now=NOW + 4_000))
    assert "replayed" in msg
    refusal(REPLAYED, lambda: call(v, now=NOW + 5_000))  # still inside its window
    # once past the window it is refused as such, and the memory is freed
    refusal(OUTSIDE_WINDOW, lambda: call(v, now=NOW + 5_001))
    call(v, ts=NOW + 5_200, now=NOW + 5_200)
    assert len(v) == 1
    # same instant, different body: a different request
    call(v, ts=NOW + 5_200, now=NOW + 5_200, body=b"{}")


def test_a_checked_request_is_kept_only_once_remembered() -> None:
    """``check`` keeps nothing (a request its key's limit then refuses fills no memory);
    ``remember`` keeps it, and refuses one kept already."""
    v = verifier()
    sig = sign(SECRET, NOW, 5_000, "POST", PATH, QUERY, BODY)
    seen = v.check(SECRET, str(NOW), None, sig, "POST", PATH, QUERY, BODY, NOW)
    assert len(v) == 0
    assert v.check(SECRET, str(NOW), None, sig, "POST", PATH, QUERY, BODY, NOW) == seen
    v.remember(seen)
    assert len(v) == 1
    refusal(REPLAYED, lambda: v.remember(seen))
    refusal(REPLAYED, lambda: call(v))


def test_a_request_signed_before_the_verifiers_start_is_refused() -> None:
    v = Verifier(60_000, 5_000, not_before_ms=NOW)
    msg = refusal(OUTSIDE_WINDOW, lambda: call(v, ts=NOW - 1, now=NOW + 10))
    assert str(NOW - 1) in msg and str(NOW) in msg and "before this gateway started" in msg
    call(v, ts=NOW, now=NOW + 10)  # signed at the start: taken


def test_replay_memory_full_forgets_soonest_to_expire() -> None:
    v = verifier(capacity=3)
    call(v, window=1_000)  # expires first
    call(v, window=30_000)
    call(v, window=20_000)
    call(v, window=10_000)  # full: forgets the 1 s one
    assert len(v) == 3
    call(v, window=1_000)  # the documented trade-off: accepted again
    refusal(REPLAYED, lambda: call(v, window=30_000))
    refusal(REPLAYED, lambda: call(v, window=20_000))


def test_replay_memory_full_of_one_bucket() -> None:
    v = verifier(capacity=2)
    call(v, ts=NOW - 1)
    call(v, ts=NOW - 2)
    call(v, ts=NOW - 3)  # same expiry bucket: it is dropped and started afresh
    assert len(v) == 1
    refusal(REPLAYED, lambda: call(v, ts=NOW - 3))


def test_replay_memory_stays_bounded_by_time() -> None:
    v = verifier()
    for i in range(1_000):
        now = NOW + i * 10
        call(v, ts=now, now=now)
    assert len(v) <= 5_000 // 10 + 100 // 10 + 1


def test_require_scope() -> None:
    require_scope(["read", "trade"], "trade")
    msg = refusal(FORBIDDEN_SCOPE, lambda: require_scope(["read"], "trade"))
    assert msg == "API key lacks scope 'trade' (it has read)"


def test_verifier_parameters() -> None:
    with pytest.raises(ValueError, match=r"default recv window 70000 ms must be in 1..60000"):
        Verifier(60_000, 70_000)
    with pytest.raises(ValueError, match="replay_capacity 0 must be at least 1"):
        Verifier(60_000, 5_000, 0)
