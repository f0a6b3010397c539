"""What a start checks before it touches an instance, each refusal naming the setting and the
limit it meets: CPUs this host lacks (``supervisor.cores``), a niceness it may not set
(``supervisor.nice``), rings that shared memory cannot hold (``ring.capacity``), TLS files
that do not load (``tls_refused``), a user's account as the fee account (``fee_account_user``),
an embedded database that cannot run (``embedded_refused``), and units other than the
journal's (``procs/common/units.py``), checked again before each restart.
Refused here, none is a process that cannot be pinned or niced (an opaque ``preexec_fn``
error), a SIGBUS once a ring fills past what /dev/shm can give, or a router that refuses
at every restart."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from pathlib import Path

from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedError, EmbeddedPostgres
from procs.common.record_codec import RecordCodec
from procs.common.tls import TlsError, mutual_context, server_context
from procs.common.topology import postgres_dir, rings, users_path
from procs.common.units import units_differ
from procs.common.users import UsersFileError, UserStore, fee_account_refused
from procs.supervisor.plan import ProcessSpec, plan
from shm.header import Geometry
from shm.inspect import SHM_DIR


def cpus_missing(specs: Iterable[ProcessSpec]) -> str:
    """Why a process of ``specs`` cannot be pinned here ("" when each can): its
    ``supervisor.cores`` name a CPU this process may not run on (the config loads anywhere:
    units for another host are made from it)."""
    host = os.sched_getaffinity(0)
    for spec in specs:
        missing = sorted(set(spec.cpus) - host)
        if missing:
            return (
                f"supervisor.cores[{spec.name!r}] names CPU(s) {missing}, which this host "
                f"lacks; it has {len(host)}: {sorted(host)}"
            )
    return ""


#: CAP_SYS_NICE's bit in /proc/self/status's CapEff (linux/capability.h).
_CAP_SYS_NICE = 23


def nice_refused(specs: Iterable[ProcessSpec]) -> str:
    """Why a process of ``specs`` cannot take its ``supervisor.nice`` here ("" when each
    can): a niceness below this process's needs CAP_SYS_NICE, or RLIMIT_NICE's room."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    floor = 20 - resource.getrlimit(resource.RLIMIT_NICE)[0]  # the lowest allowed unprivileged
    for spec in specs:
        wanted = min(19, current + spec.nice)
        if wanted < current and wanted < floor and not _has_cap_sys_nice():
            return (
                f"supervisor.nice[{spec.name!r}] = {spec.nice} would make it niceness "
                f"{wanted}, below this process's {current}: that needs CAP_SYS_NICE (root) or "
                f"an RLIMIT_NICE of at least {20 - wanted} (it is {20 - floor})"
            )
    return ""


def _has_cap_sys_nice() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def tls_refused(cfg: RingexConfig) -> str:
    """Why a TLS setting of ``cfg`` cannot serve ("" when each loads): a certificate or key
    that is missing or does not load, named by its key, checked as each listener will load
    it. Not at the config's load: a profile loads anywhere (units for another host are made
    from it), its files only where it runs; refused here, a gateway does not die at its bind
    after the instance began starting (review 142)."""
    checks: list[tuple[str, str, str, str]] = []  # (key, cert, key file, ca)
    for gw in cfg.gateways:
        checks.append((f"gateways[{gw.name!r}].tls_cert", gw.tls_cert, gw.tls_key, ""))
        if (rest := gw.rest) is not None:
            checks.append((f"gateways[{gw.name!r}].rest.tls_cert", rest.tls_cert, rest.tls_key, ""))
    rep = cfg.replication
    checks.append(("replication.tls_cert", rep.tls_cert, rep.tls_key, rep.tls_ca))
    for key, cert, key_file, ca in checks:
        try:
            if ca:
                mutual_context(cert, key_file, ca, server=True)
            else:
                server_context(cert, key_file)
        except TlsError as exc:
            return f"{key}: {exc}"
    return ""


def rings_bytes(cfg: RingexConfig) -> list[int]:
    """The size of each ring segment of ``cfg``, in bytes."""
    codec = RecordCodec()
    return [
        Geometry(codec.slot_size, spec.capacity, codec.schema_id, cfg.ring.max_consumers).total_size
        for spec in rings(cfg)
    ]


def shm_short(cfg: RingexConfig) -> str:
    """Why ``cfg``'s rings do not fit in the shared memory free now ("" when they do)."""
    sizes = rings_bytes(cfg)
    fs = os.statvfs(SHM_DIR)
    free = fs.f_bavail * fs.f_frsize
    if sum(sizes) <= free:
        return ""
    mib = 1 << 20
    return (
        f"the {len(sizes)} rings of instance {cfg.instance!r} need {sum(sizes) / mib:.1f} MiB "
        f"of shared memory (ring.capacity = {cfg.ring.capacity} slots of "
        f"{RecordCodec().slot_size} bytes each), but {SHM_DIR} has {free / mib:.1f} MiB free: "
        f"lower ring.capacity, or give {SHM_DIR} more room (docker run --shm-size)"
    )


def units_differ_now(profile: str) -> str:
    """``units.units_differ`` of the config in ``profile`` as it is now. A restarted process loads
    its profile again: one edited since the start to other units has its router refuse at
    every restart (a crash loop, its reason only in the router's log), and a gateway or the
    database writer would read the journal's integers in other units. "" where the profile
    does not load: the process says why, as it always did."""
    try:
        cfg = load_profile(profile)
    except ConfigError:
        return ""
    return units_differ(cfg)


def layout_differs_now(profile: str, running: RingexConfig) -> str:
    """Why a process restarted on ``profile`` as it is now would not join ``running``'s
    instance: another instance name, ``var_dir`` (its journal and run files), rings or
    processes. A review (2026-12-03) edited ``var_dir`` in a running instance's profile and
    killed the router: restarted, it recovered from an empty journal beside the live one;
    a renamed instance crash-looped on rings that do not exist. "" where the profile does
    not load (the process says why) or keeps all four: fees and rules a starting router
    journals, as ever."""
    try:
        cfg = load_profile(profile)
    except ConfigError:
        return ""
    was, now = Path(running.var_dir).absolute(), Path(cfg.var_dir).absolute()
    for key, new, old in (("instance", cfg.instance, running.instance), ("var_dir", now, was)):
        if new != old:
            return f"{profile} now says {key} = {str(new)!r}, the running instance has {str(old)!r}"
    names = [[spec.name for spec in plan(c)] for c in (cfg, running)]
    if rings(cfg) != rings(running) or names[0] != names[1]:
        return f"{profile} now wires other rings or processes than the running instance's"
    return ""


def fee_account_user(cfg: RingexConfig) -> str:
    """Why the gateways would refuse to start (``fee_account_refused``: a user's account is
    ``risk.fee_account``), said before anything starts; "" too where the users file does not
    read (a gateway's start says why)."""
    if not cfg.gateways:
        return ""
    try:
        return fee_account_refused(UserStore(users_path(cfg)), cfg.risk.fee_account)
    except (OSError, UsersFileError):
        return ""


def fee_account_user_now(profile: str) -> str:
    """``fee_account_user`` of the config in ``profile`` as it is now: a gateway restarted on
    a profile edited since the start to put the fee account on a user's account refuses at
    every restart (review 242: the instance stopped for its restart limit, the reason only
    in the gateway's log). "" where the profile does not load, as ``units_differ_now``."""
    try:
        return fee_account_user(load_profile(profile))
    except ConfigError:
        return ""


def embedded_refused(cfg: RingexConfig) -> str:
    """Why the embedded database (``database.enabled``, no ``dsn``) cannot run for ``cfg``:
    no PostgreSQL binaries, a ``var_dir`` too deep for its socket's path (review 263: the
    writer died at its start with a traceback, the run saying only that it exited)."""
    if not cfg.database.enabled or cfg.database.dsn:
        return ""
    try:
        EmbeddedPostgres(postgres_dir(cfg))
    except (EmbeddedError, OSError) as exc:  # (under root, its directory's making too)
        return f"the embedded database (database.dsn empty): {exc}"
    return ""
