"""How every ringex process runs CPython's cyclic garbage collector once it is ready.

CPython frees an object the moment its last reference goes; the cyclic collector is only for
objects that refer to each other. It works in three generations: a young collection walks
the objects made since the last one, a middle one those that survived, and a full one every
container object the process holds. CPython starts a full collection each time the objects
that survived a middle one have grown by a quarter since the last full one, so a process
whose state grows (a book filling with resting orders, accounts, a gateway's order memory)
walks all of it again and again, stopped while it does.

Measured here (2-core VM, 1M resting orders put into one ``FastBook``, the collector's pauses
timed with ``gc.callbacks``):

==========================================  ==========  ============  ==============
collector                                    orders/s    in the GC     longest pause
==========================================  ==========  ============  ==============
CPython's defaults (700, 10, 10)             369k        53%           319 ms
this policy (freeze, 700, 10, no full)       706k        12%           1.6 ms
young every 10k (10000, 10, no full)         631k        18%           29 ms
==========================================  ==========  ============  ==============

A full collection over 1M orders takes 340 ms and finds nothing to free: ringex's state
holds no cycles (orders, levels and accounts are trees of plain objects), so reference
counting frees them as soon as they go. What makes cycles is short-lived (asyncio's
callbacks, an exception and its traceback) and dies in the young generations, which still
collect at CPython's own thresholds.

The policy, from ``[gc]`` (``GcConfig``), applied by each process's edge once it has
recovered and before it reports ready:

- ``freeze``: collect once, then ``gc.freeze()``: what startup built moves to the permanent
  generation, which no collection walks (the technique CPython added for pre-fork servers).
- ``threshold0`` / ``threshold1``: the young and middle generations, CPython's defaults.
- ``threshold2 = 0``: no full collection starts on its own. The trade-off: a cycle that
  outlives two collections before it becomes garbage (a long-lived object with a
  back-reference, dropped later) is not freed until the process restarts; the soak checks
  (``make bench-soak``) watch every process's RSS for exactly that. Set ``threshold2`` (10
  is CPython's) to have full collections back.

Tried and rejected: a gateway with ``threshold0 = 10,000``. Its requests' short-lived objects
are walked at fewer young collections (bench-rest at ~10k requests/s: 626 collections and
0.22 s of the gateway's CPU at 700; 10 and 0.08 s at 10,000), but each walks what the last
10,000 allocations left alive, large young containers included: the longest pause went from
4.7 ms to 43 ms, and the REST p99 at 1k/s planned from 2.0 to 26 ms. A venue's tail matters
more than 1.5% of a gateway's CPU.
"""

from __future__ import annotations

import gc

from config.schema import GcConfig

#: What ``threshold2 = 0`` becomes: CPython compares its count of middle collections with the
#: threshold, and this many are never reached (one a second would take 68 years).
NEVER: int = 2**31 - 1


def settle(policy: GcConfig) -> None:
    """Set the collector for a process that has recovered and is about to say it is ready.
    Call it once, from the process's edge (``main.py``), never from a library: it changes
    the whole interpreter."""
    gc.collect()
    if policy.freeze:
        gc.freeze()
    gc.set_threshold(policy.threshold0, policy.threshold1, policy.threshold2 or NEVER)
