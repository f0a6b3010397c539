"""The value types config sections share (ranges, names) and the check that a minimum is
not above its maximum."""

from __future__ import annotations

from typing import Annotated

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]
BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,24}$")]


AssetName = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,12}$")]
FeeBps = Annotated[int, msgspec.Meta(ge=0, le=1_000)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65_535)]  # 0: any free port (tests)


def at_most(where: str, low_name: str, low: float, high_name: str, high: float) -> None:
    if low > high:
        raise ValueError(f"{where}: {low_name} = {low} is above {high_name} = {high}")
