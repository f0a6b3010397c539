"""A benchmark's sampling thread: ``sample()`` a few times a second while a ``with`` block
runs, each sample kept with its time on the monotonic clock every process of the host
shares, so a phase's window (``Phase.window``, from the load) picks its samples afterwards.
``CpuWatch``, ``RingWatch`` and ``StageWatch`` are its kinds: what they sample, and how they
read a window, is theirs."""

from __future__ import annotations

import threading
import time
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Sampler(Generic[T]):
    """Calls ``_sample`` every ``every_s`` on its thread from ``__enter__`` to ``__exit__``;
    ``_samples[i]`` was taken at ``_times[i]`` (a sample is kept before its time, so a reader
    on another thread never finds a time without its sample)."""

    def __init__(self, every_s: float, name: str) -> None:
        self._every_s = every_s
        self._times: list[float] = []
        self._samples: list[T] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._close()

    def _sample(self) -> T:
        raise NotImplementedError

    def _close(self) -> None:
        """What the sampler attached, let go once its thread has stopped."""

    def _run(self) -> None:
        while True:
            sample = self._sample()
            self._samples.append(sample)
            self._times.append(time.monotonic())
            if self._stop.wait(self._every_s):
                return
