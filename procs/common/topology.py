"""The pipeline's ring names and data paths: one place, so every process agrees.

A ring's shared-memory name is ``/ringex.<instance>.<ring name>`` (``shm.region``); ring
names are 1..48 of ``[A-Za-z0-9_-]``. Matcher names are configured (``[[matchers]] name``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.schema import RingexConfig


def matcher_input(matcher: str) -> str:
    """Sequenced commands for one matcher: written by the router."""
    return f"{matcher}-in"


def matcher_output(matcher: str) -> str:
    """One matcher's events: read by the gateways, the router, market data, the db writer."""
    return f"{matcher}-out"


def gateway_commands(gateway: int) -> str:
    """One gateway's commands to the router: written by the gateway, read by the router."""
    return f"gw{gateway}-cmd"


def gateway_replies(gateway: int) -> str:
    """The router's replies to one gateway: rejects it decided, account command answers."""
    return f"gw{gateway}-rep"


def journal_dir(cfg: RingexConfig) -> Path:
    """The router's journal of sequenced commands (``procs.common.journal``)."""
    return Path(cfg.var_dir) / cfg.instance / "journal"


def snapshot_dir(cfg: RingexConfig, owner: str) -> Path:
    """Where ``owner`` ("exchange", "matcher-<name>") keeps its snapshots."""
    return Path(cfg.var_dir) / cfg.instance / "snapshots" / owner
