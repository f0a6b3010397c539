"""Review 170: a hostile re-read of the changes since 1be1ca6 (reviews 167-169).

Its two faults are fixed, their tests say "Was (fixed)"; each suspicion checked and found
right is a plain test under "checked and found correct"."""

from __future__ import annotations

import asyncio
import inspect
import shlex
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.replication_ack import CONNECTED
from procs.common.task_end import wait_ended
from procs.common.tls import replication_context
from procs.common.users import UserStore
from procs.gateway.rest_keys import _password_held
from procs.replica import source as source_module
from procs.replica.source import ReplicationSource
from procs.replica.wire import GENESIS, EpochHistory, Hello, receive, send
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.test_review167_deadlines import let_go_within

SMALL_RCVBUF = 4096


def _mutual(cfg: RingexConfig) -> RingexConfig:
    rep = msgspec.structs.replace(cfg.replication, tls_cert=CERT, tls_key=KEY, tls_ca=CERT)
    return msgspec.structs.replace(cfg, replication=rep)


# -- faults -----------------------------------------------------------------------------------


def _line_of(code: Any, text: str, last: bool = False) -> int:
    """The line number in ``code``'s function of its (first, or last) line holding ``text``."""
    lines, first = inspect.getsourcelines(code)
    found = [first + i for i, line in enumerate(lines) if text in line]
    return found[-1] if last else found[0]


def test_a_password_changed_during_a_login_is_seen_by_the_held_check(tmp_path: Path) -> None:
    """Was (fixed: ``_load`` takes a lock, so a second read waits for the one under way, and
    then sees the file it left behind). ``_password_held`` now asks the gateway's shared
    login view (``api.logins``), which ``verify`` also re-reads from an executor thread
    (rest_keys.py:52). ``UserStore._load`` (users.py:228-230) publishes a view in two steps,
    ``self._users = ...`` then ``self._stamp = stamp``: a thread that read the file before a
    password change and sets its (old) users after the loop loaded the new file leaves the
    old users under the new file's stamp, and the loop's check, seeing the stamp unchanged,
    reads no file and answers from them. Review 163's guarantee (a key is never made for a
    password changed meanwhile) is gone in that window; the fresh ``UserStore(path)`` read
    it replaced could not race.
    Shows: with the thread held (settrace) between its two stores, the held check says the
    old password still holds right after ``set_password`` changed it.
    Fix: publish the view as one tuple ``self._view = (stamp, users, last)`` read whole by
    ``get``, or a ``threading.Lock`` around ``_load``'s stat-to-publish."""
    path = tmp_path / "users.json"
    admin = UserStore(path)
    old = admin.add("alice", "first-Password-1234", 1)
    logins = UserStore(path)  # the gateway's login view, read at start
    admin.add("bob", "bob-Password-123456", 2)  # a later file the view has not read
    load = UserStore._load_now
    read_at = _line_of(load, "self._files.refresh()")  # under the lock, about to read
    publish_at = read_at
    at_read, go_read = threading.Event(), threading.Event()
    at_publish, go_publish = threading.Event(), threading.Event()

    def local(frame: FrameType, event: str, arg: object) -> Callable[..., Any] | None:
        if event == "line" and frame.f_lineno == read_at and not go_read.is_set():
            at_read.set()
            go_read.wait(5)
        if event == "line" and frame.f_lineno == publish_at and not go_publish.is_set():
            at_publish.set()
            go_publish.wait(5)
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Callable[..., Any] | None:
        return local if frame.f_code is load.__code__ else None

    def executor_login() -> None:  # another login's verify, on the executor
        sys.settrace(tracer)
        try:
            logins.verify("bob", "bob-Password-123456")
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=executor_login)
    looked: list[object] = []
    loop = threading.Thread(target=lambda: looked.append(logins.get("alice")))
    thread.start()
    try:
        assert at_read.wait(5)  # it read the file of before the change
        admin.set_password("alice", "second-Password-5678")
        loop.start()  # the loop looks meanwhile (another request) ...
        loop.join(0.3)
        assert loop.is_alive() and not looked, "a second read ran beside the one under way"
        go_read.set()  # ... and reads once the executor's read has published
        go_publish.set()
        thread.join(5)
        loop.join(5)
        held = _password_held(logins, old)
    finally:
        go_read.set()
        go_publish.set()
        thread.join(5)
        if loop.is_alive() or looked:
            loop.join(5)
    assert not held, "the old password passed the held check after it was changed"


def test_make_lock_upgrades_every_package() -> None:
    """Was (fixed: ``--upgrade-strategy eager``). ``make lock`` says it upgrades every
    package to its newest release, and ran ``pip install --upgrade -e '.[dev]'``. pip's
    default upgrade strategy is ``only-if-needed``: the one named requirement (the project
    itself) is upgraded, its dependencies only where they no longer satisfy it, which a
    pinned venv always does. So ``make lock`` rewrote constraints.txt with the versions it
    already held, and the file that was to track releases froze for good.
    Now: the recipe's arguments ask for ``--upgrade-strategy eager``."""
    recipe = Path(__file__).parents[2].joinpath("Makefile").read_text().split("\nlock:")[1]
    line = next(x for x in recipe.splitlines() if "pip install" in x)
    args = shlex.split(line.split("pip install", 1)[1])
    assert "--upgrade" in args, args
    assert args[args.index("--upgrade-strategy") + 1] == "eager", args


# -- checked and found correct ----------------------------------------------------------------


def test_a_tls_standby_that_stopped_reading_is_reset_when_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked: ``_let_go`` (source.py:101) sees a TLS link's unsent bytes too (the SSL
    transport's buffer holds what its paused TCP transport cannot take), so a TLS standby
    that stopped reading is reset at its drop, not left to the kernel as an orphan."""
    monkeypatch.setattr(source_module, "STANDBY_SILENCE_S", 0.5)
    primary, secondary = (_mutual(cfg) for cfg in pair(tmp_path))
    append(primary, 1, 60_000)

    async def scenario() -> None:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        writer: asyncio.StreamWriter | None = None
        try:
            await asyncio.sleep(0.05)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
            sock.setblocking(False)
            port = primary.replication.listen_port
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            tls = replication_context(secondary.replication, server=False)
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=tls, server_hostname="127.0.0.1", limit=SMALL_RCVBUF
            )
            await send(writer, Hello(1, GENESIS))
            assert isinstance(await receive(reader), EpochHistory)
            await until(lambda: source.block.words[CONNECTED] == 1)
            await until(lambda: source.block.words[CONNECTED] == 0, timeout=5.0)  # dropped
            await let_go_within(writer.get_extra_info("socket"), 3.0)
        finally:
            if writer is not None:
                writer.transport.abort()
            await asyncio.sleep(0.05)
            source.stopping.set()
            async with asyncio.timeout(5):
                await serving
            source.close()

    asyncio.run(scenario())


def test_wait_ended_swallows_the_senders_cancel_and_raises_its_own() -> None:
    """Checked: ``wait_ended`` (task_end.py:16) ends quietly on the cancelled sender's end,
    and a cancel of the awaiting handler itself is raised on, not swallowed."""

    async def scenario() -> tuple[bool, bool]:
        sender = asyncio.create_task(asyncio.sleep(10))
        sender.cancel()
        await wait_ended(sender, ConnectionError)  # quiet
        stuck = asyncio.create_task(asyncio.sleep(10))

        async def handler() -> bool:
            await wait_ended(stuck)
            return True  # ran on: its cancel swallowed

        task = asyncio.create_task(handler())
        await asyncio.sleep(0.01)
        task.cancel()
        stuck.cancel()
        result = await asyncio.gather(task, return_exceptions=True)
        return sender.cancelled(), isinstance(result[0], asyncio.CancelledError)

    assert asyncio.run(scenario()) == (True, True)
