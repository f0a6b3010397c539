"""The configuration schema: frozen msgspec Structs that forbid unknown keys.

Each field says its unit and its effect. Later issues add sections (symbols, accounts,
gateways, database) beside these; a profile sets only what differs from the defaults.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shm.wait import WaitStrategy, wait_strategy

WaitName = Literal["busy-spin", "yield", "sleep", "blocking"]


class WaitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a process does while its ring is empty (or full). See ``shm/wait.py``."""

    #: busy-spin: lowest latency, one core at 100%; yield: cede the core to peers;
    #: sleep: spin, yield, then sleep with backoff; blocking: park on a semaphore (~0% idle CPU).
    strategy: WaitName = "blocking"
    #: Idle rounds spent spinning before yielding, sleeping or parking.
    spins: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 200
    #: blocking only: longest park in seconds before re-checking (bounds a missed wake-up).
    park_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.02
    #: sleep only: the backoff's first and last sleep, in seconds.
    min_sleep_s: Annotated[float, msgspec.Meta(gt=0, le=1)] = 50e-6
    max_sleep_s: Annotated[float, msgspec.Meta(gt=0, le=1)] = 5e-3

    def build(self) -> WaitStrategy:
        params: dict[str, float] = {"spins": self.spins}
        if self.strategy == "blocking":
            params["park_timeout_s"] = self.park_timeout_s
        elif self.strategy == "sleep":
            params |= {"min_sleep_s": self.min_sleep_s, "max_sleep_s": self.max_sleep_s}
        elif self.strategy == "busy-spin":
            params = {}
        return wait_strategy(self.strategy, **params)


class RingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Geometry shared by the pipeline's rings."""

    #: Slots per ring (a power of two). Bytes = capacity x slot size (128 for records).
    capacity: Annotated[int, msgspec.Meta(ge=2, le=1 << 24)] = 1 << 14
    #: Consumer lines reserved in each ring header (declared + late joiners such as taps).
    max_consumers: Annotated[int, msgspec.Meta(ge=1, le=62)] = 16

    def __post_init__(self) -> None:
        if self.capacity & (self.capacity - 1):
            raise ValueError(f"ring.capacity {self.capacity} is not a power of two")


class RingexConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A whole ringex instance."""

    #: Prefix of every shared-memory name, so instances on one host never collide.
    instance: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,48}$")] = "dev"
    ring: RingConfig = RingConfig()
    #: Wait strategy of every stage unless a stage overrides it.
    wait: WaitConfig = WaitConfig()
