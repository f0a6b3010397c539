"""Telling a stuck consumer from an idle, busy or dead one, from two ``Ring.info()`` snapshots.

A consumer's sequence moves while it works and its heartbeat moves while it waits, so over an
interval a healthy consumer shows one or the other. A supervisor samples ``info()`` twice and
acts on the verdict: restart a dead or stuck process, detach a dead one that will not return.
"""

from __future__ import annotations

from enum import Enum

from shm.ring import ConsumerInfo


class Health(Enum):
    UNATTACHED = "unattached"  # declared, no process holds it yet (it still gates the producer)
    DETACHED = "detached"  # cut loose by a supervisor; gates nobody
    DEAD = "dead"  # its process is gone: restart it, or detach it
    IDLE = "idle"  # nothing pending
    WORKING = "working"  # records pending and its sequence moved
    WAITING = "waiting"  # records pending, no progress, but a fresh heartbeat (gated, parked)
    STUCK = "stuck"  # records pending, no progress, no heartbeat for stale_after_s


def classify(earlier: ConsumerInfo, later: ConsumerInfo, *, stale_after_s: float) -> Health:
    """The verdict on one consumer from two snapshots taken some interval apart.

    An auto-committing consumer publishes its sequence every ``commit_every`` polls (and each
    batch, and when idle), so the interval must be long enough for it to get that far, or a
    very slow consumer will read as stuck."""
    if earlier.index != later.index:
        raise ValueError(f"snapshots are of consumers {earlier.index} and {later.index}")
    if later.state == "detached":
        return Health.DETACHED
    if later.pid == 0:
        return Health.UNATTACHED
    if not later.pid_alive:
        return Health.DEAD
    if later.lag == 0:
        return Health.IDLE
    if later.sequence != earlier.sequence:
        return Health.WORKING
    age = later.heartbeat_age_s
    if age is not None and age < stale_after_s:
        return Health.WAITING
    return Health.STUCK
