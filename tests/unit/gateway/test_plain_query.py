"""``plain_query`` parses a query as yarl does (aiohttp's ``request.query``), or declines."""

from __future__ import annotations

import random

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from procs.gateway.fast_request import FastRequest, plain_query

#: Characters a query's parse turns on, and some it does not.
ALPHABET = "ab=&;%+#?/ \x7f\xe9.-_09"


def yarl_pairs(query: str) -> list[tuple[str, str]]:
    return list(URL(f"/api/v1/order?{query}", encoded=True).query.items())


@pytest.mark.parametrize(
    "query",
    ["a=1&b=2", "a=1&&b=2", "a", "=x", "=", "a=", "a=1&=2", "&&", "a=b=c", "a=1;b=2", "a&b",
     "symbol=BTC-USD&orderId=123", ""],
)  # fmt: skip
def test_edge_cases_parse_as_yarl_parses_them(query: str) -> None:
    assert plain_query(query) == yarl_pairs(query)


@pytest.mark.parametrize("query", ["x=%20", "x=a+b", "a=1#frag", "a=\xe9"])
def test_what_needs_decoding_is_left_to_yarl(query: str) -> None:
    assert plain_query(query) is None


def test_random_queries_parse_as_yarl_parses_them() -> None:
    rng = random.Random(7)
    compared = 0
    for _ in range(20_000):
        query = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        pairs = plain_query(query)
        if pairs is not None:
            compared += 1
            assert pairs == yarl_pairs(query), query
    assert compared > 5_000


def test_a_fast_requests_query_is_yarls_whichever_way_it_is_parsed() -> None:
    for target in ("/api/v1/order?symbol=BTC-USD&orderId=7", "/api/v1/order?a=%41&b=+"):
        request = FastRequest("DELETE", target, CIMultiDictProxy(CIMultiDict()), b"", None, True)
        assert list(request.query.items()) == yarl_pairs(target.partition("?")[2])
