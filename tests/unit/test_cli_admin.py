"""``ringex admin`` refuses what would corrupt the books before it sends anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.cli import main


@pytest.mark.parametrize(
    "command",
    [
        ["add-user", "--username", "mallory", "--password", "pw", "--account", "1"],
        ["create-account", "--account", "1"],
    ],
)
def test_the_fee_account_is_not_given_to_a_user(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Account 1 is the default ``risk.fee_account``: a user bound to it would trade with
    every fee the exchange collected (the account exists, so opening it "succeeds")."""
    config = tmp_path / "ringex.toml"
    config.write_text(f'instance = "feetest"\nvar_dir = "{tmp_path}"\n')
    assert main(["admin", command[0], "--config", str(config), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "account 1 is the exchange's fee account (risk.fee_account = 1)" in err
    assert not (tmp_path / "feetest" / "gateway" / "users.json").exists()
