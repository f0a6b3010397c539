"""A third hostile reread of the latest fix commits (c6f7baf..b021c32): the FIX dictionary
(``THIRD_PARTY`` out of every header, ``DATA_FIELDS``, the Logon's NoMsgTypes group
``MSG_TYPES``, TestMessageIndicator 464 only N, ``_DESCRIPTIVE`` without the option fields,
``UNSUPPORTED_ORDER_FIELDS``), ``unsupported_field`` with ``DERIVATIVES``, the refusal notes,
the ResendRequest's staleness and ``_release``, the matcher's ``_dead_on_arrival`` by the
book, ``MarketState.advance`` by the feed's lagged clock only, promote's ``fees_refused``,
failover status's start time, ``systemd_units`` (``passed_environment`` by name,
``chown_instance_dirs`` with ``os.walk``/``lstat``), the ``reuse_port`` ``comp_id`` rule,
``Units``, ``host_and_port`` and the replication source's ``started``.

Each test failed on the code it was written against for the fault it names (its docstring:
what FIX 4.4, the README or the kernel asks, what the code did and where, "Actual"), and
passes since its fix (the same session's commits).

Checked and found sound, no test here: a Logon with 384=0, or with entries of 372 and 385,
is taken, and 372 or 385 outside the group is refused 373=15; 464=Y is refused 373=5; 372
in a NewOrderSingle is 373=2; ``_dead_on_arrival`` bands exactly as ``Book._take`` (cap,
``band_bps = 0`` a zero band in both, no opposite side NO_LIQUIDITY in both); the refusal
notes of D and G; ``MarketState.advance``: the marketdata tests pass, a held symbol catching
up moves by its own events then the clock, ``reseed`` leaves the clocks and a restored state
keeps each symbol's ``clock_ns`` (an idle symbol of a busy matcher's ring now closes its
candle by the lagged wall clock alone, so a feed host whose clock lags the router's closes
it that much later: late, never lost, and the README promises nothing across hosts);
``fees_refused`` on an instance with no journal writes nothing under ``var/``;
``passed_environment``'s ``--setenv=NAME`` (systemd-run takes the caller's value, empty when
unset); no file under ``procs/`` over 600 lines.

Rigs: hand-framed FIX (review 4's ``msg``) through ``FixReader`` and ``validate``; the
config loader; ``scripts/systemd_units.py`` loaded as the scripts' tests load it.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.common.run_files import run_dir
from procs.gateway import dictionary
from procs.gateway.dictionary import RejectReason
from procs.gateway.fix import FixMessage, FixReader
from procs.gateway.order_fields import unsupported_field
from tests.scripts_loader import load_script
from tests.unit.gateway.test_review4_fix_bugs import msg
from tests.unit.test_review52_ops_surfaces import unit_profile

units = load_script("systemd_units", "review51r3")


def _one(kind: str, *pairs: tuple[int, object]) -> FixMessage:
    reader = FixReader()
    reader.feed(msg(kind, 2, *pairs, now_ns=time.time_ns()))
    (framed,) = reader.messages()
    assert isinstance(framed, FixMessage)
    return framed


# -- the FIX dictionary -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["3", "j"])
def test_a_reject_with_ref_msg_type_twice_is_refused_as_a_repeated_tag(kind: str) -> None:
    """FIX 4.4 (and QuickFIX): a field outside a repeating group appears once in a message;
    a second RefMsgType (372) in a Reject (35=3) or a BusinessMessageReject (35=j) is a
    session Reject with SessionRejectReason 13, Tag appears more than once, as it was
    before these commits.

    ``first_fault`` (procs/gateway/dictionary.py) lets a tag repeat when it is in
    ``_GROUP_MEMBERS``, the members of *every* message's groups; the new Logon group
    ``MSG_TYPES`` (384: 372, 385) put RefMsgType there for every message type. A Reject or
    BusinessMessageReject has no such group (``_check_group`` never runs for it), so a
    second 372, naming another message type, is taken without a word (and the fast path
    hands any repeat to ``first_fault``, which agrees). Fix: judge a repeat by the groups of
    the message's own spec (``{m for g in spec.groups for m in g.members}``), not all.

    Actual: ``validate`` returns None for ``45=1|372=D|372=F``."""
    pairs: list[tuple[int, object]] = [(45, 1), (372, "D")]
    if kind == "j":
        pairs.append((380, 1))
    fault = dictionary.validate(_one(kind, *pairs, (372, "F")))
    assert fault is not None and fault.tag == 372, f"a second RefMsgType taken: {fault}"
    assert fault.reason == RejectReason.TAG_APPEARS_MORE_THAN_ONCE, fault


def test_a_new_order_for_a_forward_is_refused_like_a_future() -> None:
    """README (gateway): an option's or a future's fields, "or a SecurityType such as OPT
    or FUT", refuse the order: "ringex trades the symbol itself". ``DERIVATIVES``
    (procs/gateway/order_fields.py) refuses OPT, FUT, MLEG, WAR, REPO, and FXFWD, FXSWAP,
    FXNDF, IRS, CDS, which are FIX 5.0's values: FIX 4.4's SecurityType (``fix44.json``,
    which ``validate`` checks 167 against) has none of them, so those five are refused 373=5
    before ``unsupported_field`` is reached, while FIX 4.4's own forward, ``FORWARD``, is
    not in ``DERIVATIVES``. A D for a forward on BTC-USD passes ``validate`` and
    ``unsupported_field`` and is booked as a spot order on the symbol itself. Fix: put
    FIX 4.4's derivative values in ``DERIVATIVES`` (``FORWARD`` at least; the FIX 5.0 ones
    are dead there).

    Actual: ``validate`` None, ``unsupported_field`` None for 167=FORWARD."""
    order = _one(
        "D", (11, "fwd1"), (55, "BTC-USD"), (54, 1), (60, "20240101-00:00:00"), (40, 1),
        (38, 1), (167, "FORWARD"),
    )  # fmt: skip
    assert dictionary.validate(order) is None  # a value FIX 4.4 defines: no session Reject
    why = unsupported_field(order)
    assert why is not None and "167" in why, f"a forward's order taken as spot: {why!r}"


# -- the config ---------------------------------------------------------------------------------


def test_reuse_port_gateways_on_a_wildcard_and_a_host_may_answer_other_comp_ids(
    tmp_path: Path,
) -> None:
    """``RingexConfig._check_listeners`` (config/schema.py) now refuses two ``reuse_port``
    gateways of different ``comp_id`` on one port "a client's Logon lands on either". Its
    clash test counts a wildcard host (0.0.0.0) as overlapping any host, which is right for
    "both listen there", but wrong for this rule: Linux looks a listener up by the exact
    local address first and falls back to the wildcard only when none is bound
    (``__inet_lookup_listener``), so a client of 127.0.0.1:9878 always reaches the gateway
    bound there and every other client the wildcard one; none lands on either. A public
    gateway on 0.0.0.0 answering ``RINGEX`` and an internal one on the loopback answering
    ``RINGEXINT``, both ``reuse_port`` (a group each may grow), loaded before these
    commits and serve as configured. Fix: apply the comp_id rule only where the two hosts
    are equal (or both wildcards); a wildcard against a host keeps the old rule.

    Actual: ConfigError "gateway gw2 (FIX) and gateway gw1 (FIX) share 127.0.0.1:9878 with
    reuse_port but answer as comp_id 'RINGEXINT' and 'RINGEX' ..."."""
    path = tmp_path / "split.toml"
    path.write_text(
        'instance = "r51r3split"\n'
        '[[gateways]]\nname = "gw1"\nid = 1\nhost = "0.0.0.0"\nport = 9878\n'
        'reuse_port = true\ncomp_id = "RINGEX"\n'
        '[[gateways]]\nname = "gw2"\nid = 2\nhost = "127.0.0.1"\nport = 9878\n'
        'reuse_port = true\ncomp_id = "RINGEXINT"\n'
    )
    cfg = load_profile(str(path))
    assert {g.comp_id for g in cfg.gateways} == {"RINGEX", "RINGEXINT"}


# -- production with systemd (scripts/systemd_units.py) -------------------------------------------


@pytest.fixture
def nobody() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("start --uid is root's: chown needs root")
    try:
        yield pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this host")


def test_start_with_uid_does_not_follow_a_directory_swapped_for_a_link_mid_walk(
    tmp_path: Path, instance: str, nobody: pwd.struct_passwd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README (Production with systemd): ``--uid`` hands "what `start` made of
    `var/<instance>/`" to the unit user, links not followed (the reread of review 51).

    ``chown_instance_dirs`` (scripts/systemd_units.py) walks ``var/<instance>`` by path with
    ``os.walk`` and chowns by path: ``os.walk`` decides a directory is no link when it lists
    it (3.12) or just before it descends (3.11's ``islink``), then opens it by path. After
    the first start the unit user owns ``var/<instance>`` and everything in it, so it (a
    compromised gateway) makes ``run/evil/``, and at the operator's next ``start --uid``,
    run as root, swaps ``run/evil`` for a link to ``/etc`` between that check and the
    open: the walk lists ``/etc`` as ``run/evil``, ``os.lstat`` of ``run/evil/shadow``
    resolves through the link to a root-owned regular file, and ``os.chown(...,
    follow_symlinks=False)`` (which only spares the last component) hands it over: root
    for that user (CWE-367). Here the swap is made at the walk's ``scandir`` of
    ``run/evil`` (the race, won every time). Fix: ``os.fwalk(top, follow_symlinks=False)``
    and ``os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)``: each directory
    is opened without following a link and everything is resolved from its fd.

    Actual: the root-owned file outside ``var/`` belongs to ``nobody``."""
    cfg = load_profile(str(unit_profile(tmp_path, instance)))
    outside = tmp_path / "etc"
    outside.mkdir()
    target = outside / "shadow"
    target.write_text("root's\n")
    evil = run_dir(cfg) / "evil"
    evil.mkdir(parents=True)
    os.chown(evil, nobody.pw_uid, nobody.pw_gid)  # the unit user's own directory
    real_scandir = os.scandir

    run = os.stat(run_dir(cfg))

    class Listing:
        """run/'s listing (by path, or by a directory's fd), and the attacker's swap once
        the walk has read it all: after its checks, before it goes into ``evil``."""

        def __init__(self, path: Any) -> None:
            self.it = real_scandir(path)
            where = os.fstat(path) if isinstance(path, int) else os.stat(path)
            self.run = os.path.samestat(where, run)

        def __iter__(self) -> Any:
            yield from self.it
            if self.run and not evil.is_symlink():
                evil.rename(evil.with_name("was"))
                evil.symlink_to(outside)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *_: object) -> None:
            self.it.close()

        def close(self) -> None:
            self.it.close()

    def scandir(path: Any = ".") -> Any:
        return Listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    units.chown_instance_dirs(cfg, "nobody")
    monkeypatch.undo()
    assert run_dir(cfg).stat().st_uid == nobody.pw_uid  # what it is for: still done
    assert target.stat().st_uid == 0, "a file outside var/ handed over through a swapped dir"
