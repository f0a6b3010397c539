"""A standby's supervisor that holds its promotion (``replication.prestart``): the promoted
instance's processes start, held after their imports, once the standby runs, and a
promotion request releases them in this process (``promotion.py``), the fastest failover
path. ``python -m procs.supervisor.main`` comes here for such a profile."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from config import load_profile
from config.schema import RingexConfig
from procs.supervisor import promotion
from procs.supervisor.main import Supervisor, SupervisorError
from procs.supervisor.preflight import cpus_missing, fee_account_user, tls_refused

log = logging.getLogger("ringex.supervisor")


def run_standby(cfg: RingexConfig, profile: str, stopped: Callable[[], bool]) -> int:
    """A standby that holds its promotion (``promotion.py``): once it runs, the promoted
    instance's processes start, held; a promotion request stops the standby and releases
    them, in this process. A plain stop lets them go unreleased."""
    standby = Supervisor(cfg, profile)
    try:
        promotion.forget_request(cfg)  # a request of a run before is not for this one
        promoted = str(promotion.write_promoted_profile(profile))
    except OSError as exc:  # say, a read-only config directory: promote then starts it
        log.warning("the promotion is not prestarted: %s", exc)
        return standby.run(stopped)
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)  # wakes ``watch`` (wakeup fd)
    spare = Supervisor(load_profile(promoted), promoted)
    # pinned once it runs; its listeners' TLS files; its fee account no user's (review 237)
    refused = cpus_missing(c.spec for c in spare.children) or tls_refused(spare.cfg)
    if refused := refused or fee_account_user(spare.cfg):
        log.error("the promotion's processes cannot start: %s", refused)
        return 1

    def prestart() -> None:
        try:
            spare.prestart()
        except SupervisorError as exc:  # a fork refused: the standby runs on, and a
            # promotion starts the processes then, as without prestart
            log.warning("the promotion is not prestarted: %s", exc)
            spare.discard_held()
            return
        standby.prestarted = True
        standby.write_status()

    code = standby.run(lambda: stopped() or promotion.requested(cfg) > 0, started=prestart)
    epoch = promotion.requested(cfg)
    promotion.forget_request(cfg)
    if code != 0 or stopped() or not epoch:
        spare.discard_held()
        return code
    log.info("promoting %s to epoch %d", cfg.instance, epoch)

    def begin() -> bool:
        try:
            first = promotion.begin_epoch(spare.cfg, epoch)
        except (OSError, ValueError) as exc:  # EpochsError is a ValueError
            log.error("the new epoch could not be written: %s: not starting", exc)
            return False
        log.info("epoch %d begins at seq %d", epoch, first)
        return True

    return spare.run(stopped, begin=begin)  # under the lock, which the standby let go of
