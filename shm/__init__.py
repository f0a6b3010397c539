"""ringex's IPC substrate: named shared-memory segments and seqlock ring buffers.

Generic on purpose: nothing here imports ``procs`` or ``config``. A process attaches a
:class:`~shm.ring.Ring`, then takes one :class:`~shm.ring.Producer` or one
:class:`~shm.ring.Consumer` role on it. See ``shm/ring.py`` for the design notes.
"""

from shm.codec import SlotCodec, StructCodec
from shm.consumer import Consumer
from shm.errors import (
    ConsumerDetachedError,
    EncodeError,
    HeaderMismatchError,
    RingError,
    RingFullError,
    ShmError,
    TornReadError,
)
from shm.producer import Producer
from shm.region import Region
from shm.ring import Ring
from shm.wait import Blocking, BusySpin, SleepBackoff, WaitStrategy, Yielding, wait_strategy

__all__ = [
    "Blocking",
    "BusySpin",
    "Consumer",
    "ConsumerDetachedError",
    "EncodeError",
    "HeaderMismatchError",
    "Producer",
    "Region",
    "Ring",
    "RingError",
    "RingFullError",
    "ShmError",
    "SleepBackoff",
    "SlotCodec",
    "StructCodec",
    "TornReadError",
    "WaitStrategy",
    "Yielding",
    "wait_strategy",
]
