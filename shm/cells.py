"""An attribute kept in a compiled closure's cell, for the roles whose hot path is a closure.

``Producer.publish`` and ``Consumer.poll`` are compiled per instance and keep their sequence
(and the producer's limit, the consumer's slow-path bound) in closure cells: a cell is read
and written faster than an attribute. Every other method still says ``self._next``; a
``Cell`` attribute turns that into a call of the instance's ``_get_next`` or ``_set_next``,
the accessors the compiler returned beside the closure.
"""

from __future__ import annotations

from collections.abc import Callable


class Cell:
    """``self.<name>`` reads ``self._get<name>()`` and writes ``self._set<name>(value)``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._get = f"_get{name}"
        self._set = f"_set{name}"

    def __get__(self, obj: object, owner: type | None = None) -> int:
        get: Callable[[], int] = getattr(obj, self._get)
        return get()

    def __set__(self, obj: object, value: int) -> None:
        getattr(obj, self._set)(value)
