"""Snapshots on disk: ``<dir>/<seq:020d>.snap``, written atomically, the newest few kept.

A snapshot is the state after executing every command up to ``seq``; recovery loads the
newest and replays the journal from ``seq + 1``. A write goes to a temporary file that is
fsynced and renamed, so a crash leaves the previous snapshot or the new one, never half.
"""

from __future__ import annotations

from pathlib import Path

from procs.common.durable import replace_durably


class SnapshotStore:
    def __init__(self, directory: Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: a store keeps at least one snapshot")
        self.directory = directory
        self.keep = keep

    def save(self, seq: int, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(seq)
        replace_durably(path, data)
        for old in self._paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}.snap"

    def latest(self) -> tuple[int, bytes] | None:
        paths = self._paths()
        if not paths:
            return None
        return int(paths[-1].stem), paths[-1].read_bytes()

    def at_or_before(self, seq: int) -> tuple[int, bytes] | None:
        """The newest kept snapshot at or before ``seq``, or None."""
        for path in reversed(self._paths()):
            if int(path.stem) <= seq:
                return int(path.stem), path.read_bytes()
        return None

    def _paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.snap") if p.stem.isdigit())
