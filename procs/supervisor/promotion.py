"""A standby's promotion, as its own supervisor takes it: files and the new epoch.

A standby's supervisor starts the processes of its promoted instance (router, matchers,
gateways, ...) as it starts, held after their imports (``held.py``). ``failover.py promote``
fences the old primary, then asks (a request file naming the epoch and this supervisor's pid,
then SIGUSR1); the supervisor stops its standby process (which writes its snapshots), begins
the epoch and releases the held processes. Nothing imports on the failover's path: it was
about 0.7 s of a 1.2 s failover on the 2-core VM (the new supervisor's own import, then
four processes' imports on two cores).

The promoted profile is the standby's TOML without ``replication.primary``, written beside
it as ``<name>.promoted.toml`` (what an operator then runs, stops and demotes with), where
``<name>`` is the file's name without a trailing ``.standby`` or ``.promoted`` (demote's
``<name>.standby.toml``: the names alternate, never growing, review 310). Only a
standby started from a TOML file can hold a promotion; ``replication.prestart = false`` turns
it off, and ``promote`` then starts a new supervisor as before.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from pathlib import Path
from typing import Final

import tomli_w

from config.schema import RingexConfig
from procs.common import follow_only
from procs.common.crc_frames import crc_hex
from procs.common.durable import replace_durably
from procs.common.epochs import Epochs, EpochsError
from procs.common.run_files import read_json, run_dir

log = logging.getLogger("ringex.supervisor")

#: What ``promote`` writes beside the standby's config, and runs.
SUFFIX: Final = ".promoted.toml"
#: What ``failover.py demote`` writes beside the old primary's config.
STANDBY_SUFFIX: Final = ".standby.toml"
REQUEST: Final = "promote.json"


def promoted_path(standby_profile: str) -> Path:
    """``<name>.promoted.toml`` beside ``standby_profile`` (``a.standby.toml``: ``a``)."""
    return _beside(standby_profile, SUFFIX)


def standby_path(primary_profile: str) -> Path:
    """``<name>.standby.toml`` beside ``primary_profile`` (``a.promoted.toml``: ``a``)."""
    return _beside(primary_profile, STANDBY_SUFFIX)


def _beside(profile: str, suffix: str) -> Path:
    """``profile``'s file renamed ``<name><suffix>``, ``<name>`` its name without its last
    suffix (``.toml``) and without every trailing ``.standby`` and ``.promoted``: a failover
    cycle of ``a.toml`` runs ``a.promoted.toml`` and ``a.standby.toml`` in turn, and a name
    earlier builds grew (``a.standby.promoted.standby.toml``) comes back to ``a.*``."""
    path = Path(profile)
    name = base = path.name.removesuffix(path.suffix)
    while base.endswith((".standby", ".promoted")):
        base = base.rsplit(".", 1)[0]
    return path.with_name((base or name) + suffix)


def write_promoted_profile(standby_profile: str) -> Path:
    """``<name>.promoted.toml``: the standby's config as a primary. Replaced atomically,
    since a held process may be reading it while ``promote`` writes it again."""
    return _following(standby_profile, "", promoted_path(standby_profile))


def write_standby_profile(primary_profile: str, primary_at: str) -> Path:
    """``<name>.standby.toml`` (``standby_path``): the old primary's config following the
    primary at ``primary_at`` (host:port), what ``failover.py demote`` writes. Raises
    ``OSError`` (a name too long, a directory not writable)."""
    return _following(primary_profile, primary_at, standby_path(primary_profile))


def _following(profile: str, primary: str, path: Path) -> Path:
    """``profile``'s TOML with ``replication.primary`` = ``primary`` ("": none), written to
    ``path`` (replaced atomically)."""
    raw = tomllib.loads(Path(profile).read_text())
    raw.setdefault("replication", {})["primary"] = primary
    replace_durably(path, tomli_w.dumps(raw).encode())
    return path


def request(cfg: RingexConfig, supervisor_pid: int, epoch: int) -> None:
    """Ask the standby's supervisor ``supervisor_pid`` to promote its instance into
    ``epoch``. Only after the old primary is fenced: the request is the go."""
    doc = {"pid": supervisor_pid, "epoch": epoch, "crc32": _request_crc(supervisor_pid, epoch)}
    replace_durably(run_dir(cfg) / REQUEST, json.dumps(doc).encode())


def requested(cfg: RingexConfig) -> int:
    """The epoch this process was asked to promote into, else 0. A request for another
    supervisor (one of a run before) is not for this one."""
    doc = read_json(run_dir(cfg) / REQUEST)
    if doc is None or doc.get("pid") != os.getpid():
        return 0
    epoch = doc.get("epoch")
    if not isinstance(epoch, int) or epoch <= 1:
        return 0
    if doc.get("crc32") != _request_crc(os.getpid(), epoch):  # never another epoch (139)
        log.error("%s is damaged (%s): removed, no promotion until it is asked again",
                  run_dir(cfg) / REQUEST, doc)  # fmt: skip
        forget_request(cfg)  # (said once: this is polled)
        return 0
    return epoch


def _request_crc(pid: int, epoch: int) -> str:
    """The check a request carries of its pid and epoch: a flipped digit is no request."""
    return crc_hex(f"{pid} {epoch}".encode())


def forget_request(cfg: RingexConfig) -> None:
    (run_dir(cfg) / REQUEST).unlink(missing_ok=True)


def begin_epoch(cfg: RingexConfig, epoch: int) -> int:
    """Start ``epoch`` at the journal's next seq (the standby has stopped: its journal is
    whole), and skip the gateways' counter ExecIDs past the old primary's; returns that
    seq. Raises ``OSError`` or ``EpochsError`` (a ``ValueError``)."""
    from procs.common.journal import JournalReader  # noqa: PLC0415  (not on a standby's start)
    from procs.common.record_codec import RecordCodec  # noqa: PLC0415
    from procs.common.topology import journal_dir  # noqa: PLC0415

    directory = journal_dir(cfg)
    last = 0
    if directory.is_dir():
        codec = RecordCodec()
        reader = JournalReader(
            directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id
        )
        last = reader.last_seq()
    epochs = Epochs.load(directory)
    if epochs.fence is not None and epoch <= epochs.fence.epoch:
        raise EpochsError(
            f"journal {directory} was fenced by {epochs.fence.by!r}'s epoch "
            f"{epochs.fence.epoch}: promoting it to epoch {epoch} would reuse that epoch and "
            "keep a tail the promoted instance never had; only demote lifts a fence"
        )
    # Epochs that begin past this journal's end wrote nothing here (a standby still catching
    # up, or a demoted primary cut short of them): the new one follows what it holds.
    epochs.begun_by(last + 1).promoted(epoch, last + 1).save(directory)
    # a demoted journal that never reached its primary since: promoted by the operator's
    # word, its router may open it (review 310)
    follow_only.clear(directory)
    skip_exec_ids(cfg)
    return last + 1


def skip_exec_ids(cfg: RingexConfig) -> None:
    """Each gateway's counter ExecIDs start past any the old primary may have used after
    its last shipped reservation (``procs/common/exec_ids.py``, ``skip_at_promotion``)."""
    from procs.common.exec_ids import FILE_NAME, skip_at_promotion  # noqa: PLC0415
    from procs.common.topology import gateway_dir  # noqa: PLC0415  (as above)

    for gateway in cfg.gateways:
        skip_at_promotion(gateway_dir(cfg, gateway.name) / FILE_NAME)
