"""Gating: the minimum of a set of consumer sequences, the one number a waiter cares about.

The producer is gated by every active consumer (it may not lap the slowest); a consumer may be
gated by others (the journal's barrier: "read only what the journal consumer has made
durable"). Both ask the same question of the header, so both use a ``Gate``. Detached
consumers gate nobody: a dead process must not stall the pipeline forever.
"""

from __future__ import annotations

from collections.abc import Iterable

from shm.header import C_SEQUENCE, C_STATE, STATE_ACTIVE, consumer_word


class Gate:
    """The consumers at ``indexes``; ``minimum()`` reads their sequences from the header."""

    __slots__ = ("_lines", "_words", "indexes")

    def __init__(self, words: memoryview, indexes: Iterable[int]) -> None:
        self._words = words
        self.indexes = tuple(indexes)
        self._lines = tuple(
            (consumer_word(i, C_SEQUENCE), consumer_word(i, C_STATE)) for i in self.indexes
        )

    def minimum(self, default: int) -> int:
        """Smallest sequence among the active gating consumers, ``default`` if there are none."""
        words = self._words
        low = default
        for seq_word, state_word in self._lines:
            if words[state_word] == STATE_ACTIVE:
                seq = words[seq_word]
                low = min(low, seq)
        return low

    def __bool__(self) -> bool:
        return bool(self.indexes)


def mask_indexes(mask: int) -> list[int]:
    """The consumer indexes set in a gate bitmask."""
    return [i for i in range(mask.bit_length()) if mask >> i & 1]
