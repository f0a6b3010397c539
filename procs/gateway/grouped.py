"""A dict that also keeps its items by group (an order's account, its session), for the few
questions asked of one group at a time.

The gateway follows every open order in one dict per API: by order id (REST) or by session
and ClOrdID (FIX). ``openOrders``, a cancel-all, a mass status request and a session's
cancel on disconnect each want one account's or one session's orders; a scan of the dict
for them cost time in proportion to every account's orders (100k open orders: about 5 ms a
request, and a burst of disconnects, one scan each, held the event loop for seconds). The
index makes it one group's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
G = TypeVar("G", bound=Hashable)

_MISSING: Any = object()


class GroupedDict(dict[K, V], Generic[K, V, G]):
    """``dict`` whose writes (``[]=``, ``del``, ``pop``, ``clear``: the only ones its users
    make; ``update``, ``setdefault``, ``popitem`` and ``|=`` raise) keep ``groups`` in step:
    ``group_of(key, value)`` -> key -> value, each group in the order its keys were first
    set."""

    def __init__(self, group_of: Callable[[K, V], G]) -> None:
        super().__init__()
        self.group_of = group_of
        self.groups: dict[G, dict[K, V]] = {}

    def of(self, group: G) -> list[V]:
        """The values of ``group``."""
        return list(self.groups.get(group, {}).values())

    def __setitem__(self, key: K, value: V) -> None:
        group = self.group_of(key, value)
        if key in self:  # set again (an order that changed): in its group still, as a rule
            old = dict.__getitem__(self, key)
            if self.group_of(key, old) != group:
                self._unindex(key, old)
        dict.__setitem__(self, key, value)
        members = self.groups.get(group)
        if members is None:
            members = self.groups[group] = {}
        members[key] = value

    def __delitem__(self, key: K) -> None:
        value = dict.__getitem__(self, key)
        dict.__delitem__(self, key)
        self._unindex(key, value)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        value = dict.pop(self, key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._unindex(key, value)
        return value

    def clear(self) -> None:
        dict.clear(self)
        self.groups.clear()

    def _unindex(self, key: K, value: V) -> None:
        group = self.group_of(key, value)
        members = self.groups.get(group)
        if members is not None:
            members.pop(key, None)
            if not members:
                del self.groups[group]

    def setdefault(self, *_: object) -> V:
        raise NotImplementedError("GroupedDict keeps groups: set items one at a time")

    def update(self, *_: object, **__: object) -> None:
        raise NotImplementedError("GroupedDict keeps groups: set items one at a time")

    def popitem(self) -> tuple[K, V]:
        raise NotImplementedError("GroupedDict keeps groups: pop by key")

    def __ior__(self, _other: object) -> GroupedDict[K, V, G]:  # type: ignore[override,misc]
        raise NotImplementedError("GroupedDict keeps groups: set items one at a time")
