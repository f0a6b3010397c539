"""Per-key request rate limits for the REST API: one token bucket per API key or address.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a request spends ``cost``
tokens or is refused with the time until it could pass (the Retry-After hint), spending
nothing, so a client that backs off as told gets through on its next try. The table is
bounded: past ``max_keys`` keys the least recently seen is forgotten, so a flood from many
addresses costs bounded memory. A forgotten key comes back with a full bucket; to profit it
must have stayed idle while ``max_keys`` other keys were seen, and an idle bucket refills
within ``burst / rate_per_s`` seconds anyway, so at the default sizes that gains it little.

Sans-I/O: the caller passes the clock (seconds, monotonic), so tests need no sleeping.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable

from procs.gateway.api_errors import ILLEGAL_PARAM, bad_request, throttle

#: Tokens forgiven to float rounding: waiting exactly the hinted time must be enough.
_EPSILON = 1e-9
#: The longest name a bucket is kept under as it is (the REST API's longest parameter value:
#: a REST login's username, which FIX's wrong passwords share a bucket with).
MAX_KEPT_NAME = 64


def limit_key(name: str) -> str:
    """The key ``name``'s bucket is kept under: itself, or a digest of one longer than any
    name a user has, so that what a limiter keeps per key is bounded in bytes as well as in
    count (review 63: a FIX SenderCompID may be 8 KiB, 100,000 of them ~800 MB)."""
    if len(name) <= MAX_KEPT_NAME:
        return name
    return "#" + hashlib.blake2b(name.encode(errors="replace"), digest_size=16).hexdigest()


def take_batch(limiter: RateLimiter, key: str, orders: int) -> None:
    """Charge an API key's batch of ``orders`` whose request ``take`` charged one already
    (its size is known only once it is signed and read): that one given back and all
    ``orders`` taken at once, so that a 429 spends nothing and its Retry-After is the whole
    batch's wait (review 342: a hint for the other orders' share alone, their request's token
    kept, locked out a client that waited as told). 400 for a batch past the burst, which
    could never pass (``take`` would raise)."""
    if orders > limiter.burst:
        raise bad_request(
            ILLEGAL_PARAM,
            f"the batch holds {orders} orders: an API key's burst here is {limiter.burst:g} "
            f"requests, so {int(limiter.burst)} orders a batch at most",
        )
    if orders > 1:
        limiter.refund(key)
        throttle(limiter, key, "requests for this API key", orders)


class RateLimiter:
    """Token buckets keyed by any hashable (an API key id, a client address).

    Not thread-safe: one per process, used from its event loop.
    """

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s {rate_per_s} must be positive")
        if burst < 1:
            raise ValueError(f"burst {burst} must be at least 1")
        if max_keys < 1:
            raise ValueError(f"max_keys {max_keys} must be at least 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.max_keys = max_keys
        # key -> [tokens, time of the last update (s)], least recently used first
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        """Keys tracked now (at most max_keys)."""
        return len(self._buckets)

    def take(self, key: Hashable, now_s: float, cost: float = 1.0) -> float:
        """0.0 when ``key`` may go (``cost`` tokens spent), else the seconds until it may
        (nothing spent). ``now_s`` should not go backwards; when it does, the bucket simply
        does not refill until the clock is past its last update again.

        Raises ValueError when ``cost`` exceeds ``burst`` and the request is refused: such a
        request could never pass, and a Retry-After hint would be a lie.
        """
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = [self.burst, now_s]
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
            tokens = self.burst
        else:
            buckets.move_to_end(key)
            tokens = bucket[0]
            elapsed = now_s - bucket[1]
            if elapsed > 0:
                tokens = min(self.burst, tokens + elapsed * self.rate_per_s)
                bucket[0] = tokens
                bucket[1] = now_s
        if tokens + _EPSILON >= cost:
            bucket[0] = tokens - cost
            return 0.0
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds burst {self.burst:g}: it can never pass")
        return (cost - tokens) / self.rate_per_s

    def refund(self, key: Hashable, cost: float = 1.0) -> None:
        """Give back ``cost`` tokens ``take`` spent for ``key`` (at most up to ``burst``): a
        request that turned out not to count, as a login whose password held."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket[0] = min(self.burst, bucket[0] + cost)
