"""Review findings: configuration that validated but broke at runtime, `ringex` commands that
ended in a traceback instead of a message, and supervisor and `ringex shm` behaviour. Each
test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

import procs.admin.commands
import procs.cli
from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient, AdminError, to_minor_units
from procs.cli import main
from procs.common.record_codec import RecordCodec
from procs.common.records import AccountReply
from procs.common.result_codes import ResultCode
from procs.common.stats import gateway_page, matcher_page
from procs.common.topology import ADMIN_GATEWAY, ROUTER, gateway_commands
from procs.supervisor.main import Child, Supervisor, SupervisorError
from procs.supervisor.plan import ProcessSpec, plan
from shm import Ring
from shm.counters import Counters
from shm.inspect import list_segments

TWO_SYMBOLS = """
[[symbols]]
name = "BTC-USD"
id = 1
qty_decimals = 4
min_qty = {min_qty}
max_qty = {max_qty}
[[symbols]]
name = "ETH-USD"
id = 2
base = "ETH"
qty_decimals = 4
"""


def _write(tmp_path: Path, text: str, name: str = "ringex.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str) -> RingexConfig:
    return load_profile(str(_write(tmp_path, text)))


def _cli(argv: list[str]) -> int:
    """``ringex`` as a shell runs it: an argparse error is an exit status, not a test error."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _instance_config(tmp_path: Path, instance: str, extra: str = "") -> Path:
    return _write(tmp_path, f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n{extra}')


# -- config: combinations that load but cannot run ---------------------------------------------


def test_duplicate_matcher_names_are_refused(tmp_path: Path) -> None:
    """Two matchers named m1 load; the supervisor then plans two "matcher-m1" processes that
    both serve the first one's symbols and creates ring m1-in twice (ShmError: exists)."""
    text = '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
    text += '[[matchers]]\nname = "m1"\nsymbols = ["ETH-USD"]\n'
    with pytest.raises(ValueError, match="m1"):
        _load(tmp_path, text)


def test_an_instance_without_matchers_is_refused_or_planned(tmp_path: Path) -> None:
    """``symbols = []`` with ``matchers = []`` passes every check; ``plan`` then indexes
    ``cfg.matchers[0]`` for market data's ready ring and the supervisor dies with IndexError."""
    try:
        cfg = _load(tmp_path, "symbols = []\nmatchers = []\n")
    except ValueError as exc:
        assert "matcher" in str(exc) or "symbol" in str(exc)
        return
    plan(cfg)


def test_duplicate_gateway_names_are_refused(tmp_path: Path) -> None:
    """gw1 (id 1) and gw1 (id 2) load; both processes run ``--name gw1`` (id 1), so nothing
    ever attaches gw2-rep and the start times out waiting for gateway id 2."""
    text = '[[gateways]]\nname = "gw1"\nid = 1\nport = 9001\n'
    text += '[[gateways]]\nname = "gw1"\nid = 2\nport = 9002\n'
    with pytest.raises(ValueError, match="gw1"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ('[[gateways]]\nname = "gw1"\nid = 1\n[[gateways]]\nname = "gw2"\nid = 2\n', "9878"),
        ('[[gateways]]\nname = "gw1"\nid = 1\nport = 9000\n[gateways.rest]\nport = 9000\n', "9000"),
        ('[[gateways]]\nname = "gw1"\nid = 1\nport = 8765\n', "8765"),
        ("[supervisor]\nmetrics_port = 8765\n", "8765"),
        ("[replication]\nlisten_port = 9878\n", "9878"),
    ],
    ids=[
        "two-fix-no-reuse-port",
        "fix-eq-rest",
        "fix-eq-marketdata",
        "metrics-eq-md",
        "repl-eq-fix",
    ],
)
def test_two_listeners_on_one_port_are_refused(tmp_path: Path, text: str, port: str) -> None:
    """Two servers of one instance on the same 127.0.0.1 port (not two gateways sharing it
    with ``reuse_port``) load; the second bind fails at start (EADDRINUSE)."""
    with pytest.raises(ValueError, match=port):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (TWO_SYMBOLS.format(min_qty=10, max_qty=5), "min_qty"),
        (
            '[[gateways]]\nname = "gw1"\nid = 1\nmin_heartbeat_s = 100\nmax_heartbeat_s = 10\n',
            "heartbeat",
        ),
        (
            '[[gateways]]\nname = "gw1"\nid = 1\n[gateways.rest]\n'
            "recv_window_ms = 50000\nmax_recv_window_ms = 1000\n",
            "recv_window",
        ),
    ],
    ids=["min_qty>max_qty", "min>max heartbeat", "recv_window>max"],
)
def test_min_above_max_is_refused(tmp_path: Path, text: str, key: str) -> None:
    """min_qty > max_qty refuses every order of the symbol; min_heartbeat_s > max refuses
    every logon; recv_window_ms > max_recv_window_ms makes the gateway's ``Verifier`` raise
    at every start (a crash loop that stops the instance). All load without a word."""
    with pytest.raises(ValueError, match=key):
        _load(tmp_path, text)


def test_max_consumers_below_a_rings_readers_is_refused(tmp_path: Path) -> None:
    """Each matcher output is read by the router, every gateway and market data (3 here);
    ``max_consumers = 2`` loads and ``create_rings`` fails: "all 2 consumer lines are taken"."""
    with pytest.raises(ValueError, match="max_consumers"):
        _load(tmp_path, "[ring]\nmax_consumers = 2\n")


def test_a_matcher_named_like_a_gateway_does_not_share_its_counter_page(tmp_path: Path) -> None:
    """Matcher pages are ``stats-<name>``, gateway pages ``stats-gw<id>``: a matcher named gw1
    and gateway 1 each replace the other's page (other counter names), and a scrape reading
    gateway keys from the matcher's page fails."""
    try:
        cfg = _load(tmp_path, '[[matchers]]\nname = "gw1"\nsymbols = ["BTC-USD", "ETH-USD"]\n')
    except ValueError as exc:
        assert "gw1" in str(exc)
        return
    gateways = {gateway_page(g.id) for g in cfg.gateways}
    assert not gateways & {matcher_page(m.name) for m in cfg.matchers}


def test_a_primary_that_is_not_host_port_is_refused_at_load(tmp_path: Path) -> None:
    """``primary = "nohostport"`` loads; the standby process raises on ``primary_address()``
    at every start, and the supervisor restarts it until the instance stops."""
    with pytest.raises(ValueError, match="nohostport"):
        _load(tmp_path, '[replication]\nprimary = "nohostport"\n')


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[supervisor]\ncores = {"matcher-mx" = [0]}\n', "matcher-mx"),
        ('[supervisor]\nnice = {"dbwritr" = 10}\n', "dbwritr"),
    ],
)
def test_cores_and_nice_keys_name_a_process(tmp_path: Path, text: str, key: str) -> None:
    """A typo in a process name leaves that process unpinned (or not niced) in silence: an
    unknown key must be an error naming it."""
    with pytest.raises(ValueError, match=key):
        _load(tmp_path, text)


def test_a_missing_config_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    """``load_profile`` promises ValueError naming the file; a missing ``x.toml`` escapes
    as FileNotFoundError, which no caller (the CLI, the supervisor) expects."""
    missing = tmp_path / "missing.toml"
    with pytest.raises(ValueError, match=r"missing\.toml"):
        load_profile(str(missing))


# -- the command line ---------------------------------------------------------------------------


def test_config_file_without_a_suffix_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config /etc/ringex/prod`` (an existing TOML file) is refused as "profile ...
    is unknown": ``--config`` goes through the profile-name path of ``load_profile``."""
    path = _write(tmp_path, f'instance = "rvnosuffix"\nvar_dir = "{tmp_path}"\n', name="prod")
    assert _cli(["status", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["instance"] == "rvnosuffix"


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--profile", "nosuch"],
        ["stop", "--profile", "nosuch"],
        ["status", "--config", "{tmp}/missing.toml"],
    ],
    ids=["status-profile", "stop-profile", "status-missing-file"],
)
def test_a_bad_profile_is_a_message_not_a_traceback(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main`` does not catch the loader's error: the operator gets a traceback (ValueError,
    or FileNotFoundError for a missing file) instead of a line naming the profile."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert _cli(argv) != 0
    assert argv[-1].rsplit("/", 1)[-1] in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["deposit", "--account", "100", "--asset", "USD", "--amount", "1"],
        ["create-account", "--account", "100"],
        ["halt", "BTC-USD"],
        ["add-user", "--username", "u", "--password", "p"],
    ],
    ids=lambda c: c[0],
)
def test_admin_without_a_running_instance_says_so(
    command: list[str], tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``AdminClient(cfg)`` attaches the admin rings outside the ``try`` that turns errors
    into messages: "segment '/ringex.<i>.gw0-cmd' does not exist" escapes as a traceback."""
    config = _instance_config(tmp_path, instance)
    assert _cli(["admin", command[0], "--config", str(config), *command[1:]]) == 1
    assert instance in capsys.readouterr().err


@pytest.mark.parametrize("amount", ["Infinity", "sNaN", "1e400", "1e999999999999"])
def test_admin_refuses_an_amount_it_cannot_send_with_a_message(
    amount: str, tmp_path: Path, admin_rings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``to_minor_units`` lets OverflowError (Infinity), InvalidOperation (sNaN) and
    decimal.Overflow escape, and passes amounts beyond int64 minor units on to ``publish``
    (EncodeError / RecordDecodeError): each is a traceback, not "amount ... too large"."""
    config = _instance_config(tmp_path, admin_rings)
    argv = ["admin", "deposit", "--config", str(config), "--account", "100"]
    assert _cli([*argv, "--asset", "USD", "--amount", amount]) == 1
    assert "amount" in capsys.readouterr().err


def test_an_amount_past_int64_is_not_published_as_a_record_the_router_cannot_read(
    tmp_path: Path, admin_rings: str
) -> None:
    """9223372036854.775808 USD is 2**63 minor units: ``publish`` takes it (the ring's encoder
    checks no I64 bound below 2**64; only the journal's ``encode_slots`` does), and the
    router's ``consumer.read`` then raises RecordDecodeError on that slot, uncaught: it
    crashes, re-reads the uncommitted slot after each restart, and the instance stops."""
    cfg = load_profile(str(_instance_config(tmp_path, admin_rings)))
    client = AdminClient(cfg)
    try:
        with pytest.raises(AdminError):  # refused, or (today) no router answers
            client.transfer(100, "USD", "9223372036854.775808", timeout_s=0.05)
    finally:
        client.close()
    ring = Ring.attach(cfg.instance, gateway_commands(ADMIN_GATEWAY), RecordCodec())
    router = ring.consumer(ROUTER)
    try:
        router.read(8)  # what the router's loop does with the admin ring
    finally:
        router.close()
        ring.close()


class _FakeAdmin:
    """Stands in for ``AdminClient``: answers OK and records what it was asked to send."""

    calls: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg

    def create_account(self, account: int, timeout_s: float = 10.0) -> AccountReply:
        self.calls.append(("create", account))
        return AccountReply(1, 0, 0, 0, 0, account, 0, ResultCode.OK, 0)

    def transfer(
        self, account: int, asset: str, amount: str, key: int | None = None, timeout_s: float = 10
    ) -> AccountReply:
        self.calls.append(("transfer", account, asset, amount))
        asset_id, units = to_minor_units(self.cfg, asset, amount)
        return AccountReply(2, 0, 0, 0, 0, account, asset_id, ResultCode.OK, units)

    def halt(self, symbol: str, resume: bool = False) -> None:
        self.calls.append(("halt", symbol, resume))

    def close(self) -> None:
        pass


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(_FakeAdmin, "calls", calls)
    monkeypatch.setattr(procs.admin.commands, "AdminClient", _FakeAdmin)
    return calls


def test_deposit_refuses_a_negative_amount(
    tmp_path: Path, instance: str, fake_admin: list[tuple[Any, ...]]
) -> None:
    """deposit sends the amount as given, so a negative "deposit" is a withdrawal (and
    ``withdraw --amount -5`` is refused as "--5 is not a decimal number")."""
    config = _instance_config(tmp_path, instance)
    argv = ["admin", "deposit", "--config", str(config), "--account", "100", "--asset", "USD"]
    assert _cli([*argv, "--amount", "-5"]) != 0
    assert not [c for c in fake_admin if c[0] == "transfer"]


def test_add_user_default_account_skips_the_fee_account(
    tmp_path: Path, instance: str, fake_admin: list[tuple[Any, ...]]
) -> None:
    """With ``risk.fee_account = 100`` and no users the default account is 100, and add-user
    (no --account given) fails with "account 100 is the exchange's fee account: pick another"."""
    config = _instance_config(tmp_path, instance, "[risk]\nfee_account = 100\n")
    assert (
        _cli(["admin", "add-user", "--config", str(config), "--username", "u", "--password", "p"])
        == 0
    )
    opened = [c[1] for c in fake_admin if c[0] == "create"]
    assert opened and 100 not in opened


def test_add_user_refuses_a_bad_comp_id_before_it_opens_and_funds_the_account(
    tmp_path: Path, instance: str, fake_admin: list[tuple[Any, ...]]
) -> None:
    """A comp id over 32 characters is refused by ``UserStore.add`` only after the account was
    opened and the deposits sent: a ValueError traceback and a funded account with no user."""
    config = _instance_config(tmp_path, instance)
    argv = ["admin", "add-user", "--config", str(config), "--username", "u", "--password", "p"]
    assert _cli([*argv, "--comp-id", "C" * 33, "--deposit", "USD=10"]) != 0
    assert fake_admin == []


def test_status_json_has_the_same_keys_before_the_first_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stopped fallback has only instance/state/processes: "role", "supervisor_pid",
    "reason", "metrics_url", ... appear only once a supervisor has written status.json, so a
    script reading ``["role"]`` fails on an instance that never ran."""
    (tmp_path / "ran").mkdir()
    ran = load_profile(str(_instance_config(tmp_path / "ran", "rvran")))
    Supervisor(ran, "ran").write_status()
    (tmp_path / "new").mkdir()
    fresh = _instance_config(tmp_path / "new", "rvnever")
    assert _cli(["status", "--config", str(fresh), "--json"]) == 0
    never = json.loads(capsys.readouterr().out)
    assert _cli(["status", "--config", str(tmp_path / "ran" / "ringex.toml"), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert set(written) - set(never) == set()


@pytest.mark.parametrize("how", [["--instance"], ["--stale", "--instance"]], ids=["plain", "stale"])
def test_shm_rm_keeps_the_counter_pages_of_a_live_instance(how: list[str], instance: str) -> None:
    """Counter pages (``stats-<matcher>``) are not rings, so ``list_segments`` names no pid
    for them and calls them stale: ``ringex shm rm --instance I`` without --force (and
    ``--stale``) removes them under a running matcher; the supervisor's next attach finds
    nothing and the metrics lose its counters until it restarts."""
    ring = Ring.create(instance, "m1-in", RecordCodec(), capacity=64, consumers=[])
    page = Counters.open(instance, matcher_page("m1"), ["last_seq"])
    try:
        assert not next(s for s in list_segments(instance) if s.name == "m1-in").stale
        assert main(["shm", "rm", *how, instance]) == (1 if how == ["--instance"] else 0)
        Counters.attach(instance, matcher_page("m1")).close()
    finally:
        page.close()
        ring.close()


def test_a_restart_that_fails_to_start_counts_toward_restart_limit(
    tmp_path: Path, instance: str
) -> None:
    """``_restart`` waits for the new process with ``_wait_ready``, which raises
    SupervisorError as soon as it exits while starting: with ``restart_limit = 2`` a process
    that dies once more during its restart stops the whole instance after 1 restart, not
    after more than 2 as the escalation rule says."""
    config = _instance_config(tmp_path, instance, "[supervisor]\nrestart_limit = 2\n")
    cfg = load_profile(str(config))
    sup = Supervisor(cfg, str(config))
    ring = Ring.create(instance, "x-in", RecordCodec(), capacity=64, consumers=["matcher"])
    sup._rings = {"x-in": ring}
    spec = ProcessSpec("matcher-x", "procs.no_such_module", (), (), "x-in", "matcher")
    child = Child(spec)
    sup.children = [child]
    try:
        sup._restart(child, 1)
    except SupervisorError as exc:
        assert len(child.restarts) > cfg.supervisor.restart_limit, str(exc)
    finally:
        ring.close()
