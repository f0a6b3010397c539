"""Review 106, signing: README.md's "### The REST API and the private stream" on a private
request's headers, window, payload and signature, held to ``signing.py`` (and the served
OpenAPI document's stream parameters). Shared rig: ``readme_rest_claims.py``.
"""

from __future__ import annotations

import pytest

from config.edges import RestConfig
from procs.gateway import signing
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest import RestApi
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import _claim, _operation, _says

local = claims.local  # the fixture: a RestApi made, never started


def test_signing_headers_window_and_payload_are_the_readmes(local: RestApi) -> None:
    """README: "`X-RINGEX-APIKEY`, `X-RINGEX-TIMESTAMP` (ms), optionally
    `X-RINGEX-RECV-WINDOW` (ms, default 5000, at most 60000) and `X-RINGEX-SIGNATURE`: the
    hex HMAC-SHA256, keyed by the secret, of `timestamp\\nwindow\\nMETHOD\\npath\\nquery\\n`
    + body (`window`: the header's value, or `recv_window_ms`, 5000, when it is not sent)"
    (signing.py:31-34, :62 ``payload``, :224-237; edges.py:29-30)."""
    _claim(
        "Private requests carry `X-RINGEX-APIKEY`, `X-RINGEX-TIMESTAMP` (ms), optionally "
        "`X-RINGEX-RECV-WINDOW` (ms, default 5000, at most 60000) and `X-RINGEX-SIGNATURE`"
    )
    _claim(
        r"keyed by the secret, of `timestamp\nwindow\nMETHOD\npath\nquery\n` + body "
        "(`window`: the header's value, or `recv_window_ms`, 5000, when it is not sent)"
    )
    assert (signing.API_KEY, signing.TIMESTAMP, signing.RECV_WINDOW, signing.SIGNATURE) == (
        "X-RINGEX-APIKEY",
        "X-RINGEX-TIMESTAMP",
        "X-RINGEX-RECV-WINDOW",
        "X-RINGEX-SIGNATURE",
    )
    assert (RestConfig().recv_window_ms, RestConfig().max_recv_window_ms) == (5_000, 60_000)
    assert signing.payload(17, 5000, "get", "/p", "a=1", b"b=2") == b"17\n5000\nGET\n/p\na=1\nb=2"
    verifier = signing.Verifier(60_000, 5_000)
    now = 1_800_000_000_000
    sig = signing.sign("s3cret", now, 5_000, "GET", "/p", "", b"")
    verifier.check("s3cret", str(now), None, sig, "GET", "/p", "", b"", now)  # 5000 taken
    sig = signing.sign("s3cret", now, 60_000, "GET", "/p", "", b"")
    verifier.check("s3cret", str(now), "60000", sig, "GET", "/p", "", b"", now)
    sig = signing.sign("s3cret", now, 60_001, "GET", "/p", "", b"")
    with pytest.raises(signing.AuthError) as refused:
        verifier.check("s3cret", str(now), "60001", sig, "GET", "/p", "", b"", now)
    assert refused.value.code == signing.BAD_WINDOW and "60001" in refused.value.msg
    stream = {p["name"]: p["schema"] for p in _operation("GET", STREAM_PATH)["parameters"]}
    assert stream["recvWindow"]["maximum"] == RestConfig().max_recv_window_ms
    # the gateway's verifier is the config's
    assert (local.verifier.default_recv_window_ms, local.verifier.max_recv_window_ms) == (
        local.rest.recv_window_ms,
        local.rest.max_recv_window_ms,
    )


def test_the_signatures_hex_case_is_the_readmes() -> None:
    """README "`X-RINGEX-SIGNATURE`: the hex HMAC-SHA256": either the README says lower-case,
    or the code takes either case (signing.py ``check``)."""
    now = 1_800_000_000_000
    upper = signing.sign("s3cret", now, 5_000, "GET", "/p", "", b"").upper()
    try:
        signing.Verifier(60_000, 5_000).check(
            "s3cret", str(now), None, upper, "GET", "/p", "", b"", now
        )
    except signing.AuthError:
        assert _says("lower-case hex HMAC-SHA256")


def test_a_signature_is_taken_once_and_one_made_before_the_start_is_minus_1021() -> None:
    """README: "A signature is accepted once, within its window" and "a request signed
    before the gateway process started is refused (`-1021`, naming its start ...)"
    (signing.py:244 ``not_before_ms``, :281 REPLAYED)."""
    _claim("A signature is accepted once, within its window")
    _claim(
        "a request signed before the gateway process started is refused (`-1021`, naming its start"
    )
    start = 1_800_000_000_000
    verifier = signing.Verifier(60_000, 5_000, not_before_ms=start)
    sig = signing.sign("k", start, 5_000, "GET", "/p", "", b"")
    verifier.verify("k", str(start), None, sig, "GET", "/p", "", b"", start + 10)
    with pytest.raises(signing.AuthError) as again:
        verifier.verify("k", str(start), None, sig, "GET", "/p", "", b"", start + 20)
    assert again.value.code == signing.REPLAYED
    early = start - 100
    sig = signing.sign("k", early, 5_000, "GET", "/p", "", b"")
    with pytest.raises(signing.AuthError) as before:
        verifier.check("k", str(early), None, sig, "GET", "/p", "", b"", start + 10)
    assert before.value.code == signing.OUTSIDE_WINDOW == -1021
    assert str(start) in before.value.msg and str(early) in before.value.msg
