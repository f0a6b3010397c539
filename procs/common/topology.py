"""The pipeline's ring names: one place, so producers and consumers agree.

A ring's shared-memory name is ``/ringex.<instance>.<ring name>`` (``shm.region``); ring
names are 1..48 of ``[A-Za-z0-9_-]``. Matcher names are configured (``[[matchers]] name``).
"""

from __future__ import annotations


def matcher_input(matcher: str) -> str:
    """Sequenced commands for one matcher: written by the router."""
    return f"{matcher}-in"


def matcher_output(matcher: str) -> str:
    """One matcher's events: read by the gateways, the router, market data, the db writer."""
    return f"{matcher}-out"
