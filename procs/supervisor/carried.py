"""Counters that never go down while the supervisor runs, though what counts them restarts.

The supervisor is the Prometheus target, so a counter it serves must only go up until the
supervisor itself restarts: Prometheus takes any decrease for a reset of the target and, in
``rate()``, counts the whole new value again. Two things the collector reads start over when
a process restarts under a supervisor that keeps running:

- a gateway's counter page: the gateway counts in memory and stores its counts once per
  batch, so its first batch after a restart writes them from zero over the page;
- a process's CPU time (``/proc/<pid>/stat``): a new process starts from zero.

``Carried`` adds what earlier incarnations counted, as last scraped, to what the current one
reports. A page restarted when any of its counters went down since the last scrape (its
counters only grow while one writer holds it); a process when its pid changed, or its CPU
time went down.
What an incarnation counted after the last scrape before it died is lost: nothing holds it.
A new writer that passes every count of the old one before the next scrape is not seen to
restart (its counts then stand for both): counts are too low, never going down.

Rejected: counting in the processes from what the page holds at their start (the gateway
owns that code; the collector sees every restart anyway); a gauge in place of the counter.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


class Carried:
    """Per key (a page's name, a process's name), the values of the last scrape and the sums
    of the incarnations before. Used by the collector alone, under its lock."""

    def __init__(self) -> None:
        self._last: dict[Hashable, dict[str, float]] = {}
        self._before: dict[Hashable, dict[str, float]] = {}
        self._owner: dict[Hashable, Hashable] = {}

    def page(self, key: Hashable, values: Mapping[str, float]) -> dict[str, float]:
        """``values`` (every counter of a page, read whole) plus what the page's earlier
        writers counted: a decrease of any counter is a new writer, from zero."""
        last = self._last.get(key)
        before = self._before.setdefault(key, {})
        if last is not None and any(values.get(k, v) < v for k, v in last.items()):
            for k, v in last.items():
                before[k] = before.get(k, 0) + v
        self._last[key] = dict(values)
        return {k: v + before.get(k, 0) for k, v in values.items()}

    def incarnation(self, key: Hashable, owner: Hashable, value: float) -> float:
        """``value``, counted by ``owner`` (a process's pid: not its start time, which a
        held process gets when released), plus what the key's earlier owners counted by
        their last scrape; a value that went down is a new owner too (a pid used again)."""
        before = self._before.setdefault(key, {})
        last = self._last.get(key)
        if last is not None and (self._owner.get(key) != owner or value < last[""]):
            before[""] = before.get("", 0) + last[""]
        self._owner[key] = owner
        self._last[key] = {"": value}
        return value + before.get("", 0)

    def total(self, key: Hashable) -> float | None:
        """What ``incarnation`` last reported for ``key`` (its owner is gone); None if never."""
        last = self._last.get(key)
        if last is None:
            return None
        return last[""] + self._before.get(key, {}).get("", 0)
