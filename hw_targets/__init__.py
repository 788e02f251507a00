"""Chips the toolchain deploys to; one module per chip, each a frozen dataclass."""
from __future__ import annotations

from ahsar_deploy.errors import TargetError

from .loihi import LOIHI, LoihiTarget

TARGETS = {LOIHI.name: LOIHI}


def get(name: str) -> LoihiTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise TargetError(f"unknown target {name!r}: choose one of {', '.join(sorted(TARGETS))}") from None


__all__ = ["TARGETS", "get", "LoihiTarget", "LOIHI"]
