"""Second read of the whole day (114fa76..): how the pieces meet. The session throttle's clock
and debt, the admin sequencer exemption against journal replay, and what the users file's
change detection takes for a change. The test whose docstring opens with "What is wrong"
failed on the code as reviewed and passes since its fix; the others pin properties that hold
and that nothing pinned yet."""

from __future__ import annotations

from pathlib import Path

import msgspec

from config.schema import RingexConfig, RiskConfig
from procs.common.records import MassCancel
from procs.common.result_codes import ResultCode
from procs.common.token_bucket import TokenBucket
from procs.common.topology import ADMIN_GATEWAY
from procs.common.users import UserStore
from procs.core.accounts import Accounts
from procs.core.sequencer import Sequencer

_S = 1_000_000_000  # ns
_T = 1_700_000_000 * _S  # a wall-clock reading, as ``Session`` passes ``time.time_ns()``


# -- what is wrong --------------------------------------------------------------------------


def test_a_wall_clock_stepped_back_does_not_silence_a_fix_session() -> None:
    """What is wrong: procs/gateway/limits.py:91-93 (the session's throttle, a TokenBucket of
    procs/common/token_bucket.py now) refills only
    for a reading later than the last one, and keeps that last reading: after the wall clock
    steps back (an NTP step; ``Session`` passes ``time.time_ns()``, session.py:143 and the
    server's ``time.time_ns()`` calls), the bucket refills nothing until the clock has passed
    its old reading again. A session that spends its tokens at the step is refused every
    application message (cancels included: session.py:526) for as long as the step, a
    minute here, though real time passes. The module's own docstring says its clock is
    monotonic; the session's is not. (The inline code it replaced was worse: a negative
    elapsed time drained the bucket.) Right: a reading earlier than the last refills
    nothing but becomes the new base (``self._ns = now_ns`` whatever the direction, the
    refill only for a positive elapsed time), or the session feeds the throttle
    ``time.monotonic_ns()``. Then two seconds after the step the bucket is full again. The
    router's ``Sequencer._allow`` (sequencer.py:241-255, ``at_ns = max(at_ns, now_ns)``)
    starves every account the same way after a step of the router's clock."""
    throttle = TokenBucket(10, _T)
    assert all(throttle.allow(_T) for _ in range(10))
    assert not throttle.allow(_T)  # spent
    stepped = _T - 60 * _S  # the clock steps back a minute
    assert not throttle.allow(stepped)  # no refill for the step itself: right
    later = stepped + 2 * _S  # two real seconds on
    served = sum(throttle.allow(later) for _ in range(10))
    assert served == 10, (
        f"2 s after a 60 s step back of the clock the session is served {served} of 10 "
        "messages: its bucket waits for the clock to pass its reading before the step"
    )


# -- what holds -----------------------------------------------------------------------------


def test_a_mass_status_debt_is_repaid_within_a_second_and_a_bit() -> None:
    """Holds: an AF's reports are charged one token each (``TokenBucket.charge``), a debt
    of one second's worth at most (1,000 reports at 100 messages/s leave -100, not -901: the
    review found a deeper debt held the session's own cancels back for count/rate seconds),
    repaid at the rate: refused while in debt, served again just over a second on, with the
    bucket refilling to its one second's worth and no more. An AF needs a whole token to
    pass, so no second AF deepens a debt."""
    throttle = TokenBucket(100, _T)
    assert throttle.allow(_T)  # the AF itself
    throttle.charge(1_000, _T)  # its 1,000 reports
    assert not throttle.allow(_T + _S // 2)  # -100 + 50: in debt
    assert not throttle.allow(_T + _S + _S // 200)  # half a token: not a whole one
    assert throttle.allow(_T + _S + _S // 30)  # about 2.3 tokens: served
    throttle.charge(0, _T + 1_000 * _S)  # an AF that matched nothing costs nothing more
    assert sum(throttle.allow(_T + 1_000 * _S) for _ in range(150)) == 100  # capped at rate


def test_the_operators_kill_switch_draws_on_no_rate_and_replays_alike() -> None:
    """Holds: at one command a second, a burst of mass cancels from the admin gateway is
    taken whole and spends none of the account's bucket (a gateway's mass cancel right after
    still passes, its second is ACCOUNT_RATE_LIMITED). The exemption is decided on the
    live path only: replay applies journaled commands without the soft checks, so the
    journal of that burst replays to the same next seq under any rate (the rate is no
    replay state), and nothing is decided differently after a restart."""
    cfg = msgspec.structs.replace(
        RingexConfig(), risk=RiskConfig(max_commands_per_s=1, fee_account=99)
    )
    live = Sequencer(cfg, Accounts(cfg))
    live.accounts.create_account(7)  # the account it stops: an unknown one is refused (rev. 45)
    journal = []
    codes = []
    for ref, gateway in enumerate((ADMIN_GATEWAY,) * 5 + (1, 1), start=1):
        decision = live.submit(MassCancel(0, 0, gateway, 0, ref, 7, 0), _T)
        codes.append(getattr(decision.reply, "code", None))
        if decision.command is not None:
            journal.append(decision.command)
    assert codes == [ResultCode.OK] * 6 + [ResultCode.ACCOUNT_RATE_LIMITED]
    for rate in (1, 1_000):
        again_cfg = msgspec.structs.replace(cfg, risk=RiskConfig(max_commands_per_s=rate))
        again = Sequencer(again_cfg, Accounts(again_cfg))
        for command in journal:
            again.replay(command)
        assert again.next_seq == live.next_seq


def test_only_a_users_own_record_changing_logs_its_session_out(tmp_path: Path) -> None:
    """Holds: ``Session.on_timer`` (session.py:254) logs a session out when the users file's
    record of its user is no longer equal to the one it logged on with, ``User`` being a
    frozen struct compared field by field (comp id, account, session, salt, digest, scrypt
    costs, cancel_on_disconnect). So another user added or removed (the whole file written
    again) keeps every other session; the user removed and added again, even with the same
    password and account, is a new salt, digest and session id, a changed record: its
    sessions end (the README's "the same for a session whose user was removed and added
    again")."""
    path = tmp_path / "users.json"
    admin = UserStore(path)
    admin.add("ALICE", "secret", 7, n=1 << 4)
    admin.add("BOB", "hunter2", 8, n=1 << 4)
    gateway = UserStore(path)  # the gateway's view, read at its start
    alice, bob = gateway.get("ALICE"), gateway.get("BOB")
    admin.add("CAROL", "pw", 9, n=1 << 4)
    admin.remove("BOB")
    assert gateway.get("ALICE") == alice  # rewritten twice: still the same record
    assert gateway.get("BOB") is None and bob is not None
    admin.remove("ALICE")
    admin.add("ALICE", "secret", 7, n=1 << 4)
    back = gateway.get("ALICE")
    assert back is not None and alice is not None
    assert back.account == alice.account
    assert back != alice  # a new salt and session id: the session it had is logged out
