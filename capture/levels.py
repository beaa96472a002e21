"""Level names as UE reports them. Pure; no engine client needed (training.eval imports the planner
on machines without the unrealcv package)."""

from __future__ import annotations


def level_short_name(level: str) -> str:
    """What `vget /level/name` reports for a level: `/Game/Maps/Street.Street` and `Street` are `Street`."""
    return level.strip().rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
