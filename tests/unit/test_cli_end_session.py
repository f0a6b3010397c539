"""``ringex admin end-session [SYMBOL]``: END_OF_SESSION into the admin ring, for one symbol
or (symbol 0) every one; an unknown symbol is refused before anything is attached."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.cli import main
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand
from procs.common.topology import ADMIN_GATEWAY, ROUTER, gateway_commands
from procs.common.types import AdminAction
from shm import Ring


def _profile(tmp_path: Path, instance: str) -> str:
    path = tmp_path / "ringex.toml"
    path.write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n')
    return str(path)


def _published(instance: str) -> list[AdminCommand]:
    ring = Ring.attach(instance, gateway_commands(ADMIN_GATEWAY), RecordCodec())
    router = ring.consumer(ROUTER)
    try:
        got = router.read(64)
    finally:
        router.close()
        ring.close()
    commands = [r for r in got if isinstance(r, AdminCommand)]
    assert commands == got, got
    return commands


@pytest.mark.parametrize(("argv", "symbol", "said"), [
    (["BTC-USD"], 1, "end-session BTC-USD: sent"),
    (["ETH-USD"], 2, "end-session ETH-USD: sent"),
    ([], 0, "end-session every symbol: sent"),
])  # fmt: skip
def test_end_session_sends_end_of_session(
    argv: list[str],
    symbol: int,
    said: str,
    admin_rings: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _profile(tmp_path, admin_rings)
    assert main(["admin", "end-session", "--config", config, *argv]) == 0
    assert said in capsys.readouterr().out
    (command,) = _published(admin_rings)
    assert command.action == AdminAction.END_OF_SESSION
    assert command.symbol == symbol


def test_an_unknown_symbol_is_refused_naming_it_and_the_known_ones(
    admin_rings: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _profile(tmp_path, admin_rings)
    assert main(["admin", "end-session", "--config", config, "DOGE-USD"]) == 2
    err = capsys.readouterr().err
    assert "symbol 'DOGE-USD' is not configured (symbols: BTC-USD, ETH-USD)" in err
    assert _published(admin_rings) == []


def test_an_unknown_symbol_is_refused_even_with_nothing_running(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo is said as a typo, not as an instance that is down."""
    config = _profile(tmp_path, instance)
    assert main(["admin", "end-session", "--config", config, "btc-usd"]) == 2
    assert "symbol 'btc-usd' is not configured" in capsys.readouterr().err


def test_end_session_of_an_instance_not_running(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "end-session", "--config", _profile(tmp_path, instance)]) == 1
    assert f"instance {instance} is not running" in capsys.readouterr().err
