"""Chips the toolchain deploys to or estimates energy for; one module per chip, each a
frozen dataclass with the same field names (grid, limits, energy, each number cited).

TARGETS: chips `ahsar-export --target` builds for (Lava fixed-point grid).
ENERGY_MODELS: every chip `ahsar energy --target` can estimate, TARGETS included.
SpiNNaker and SpiNNaker 2 are energy models only (hw_targets/spinnaker.py).
"""
from __future__ import annotations

from ahsar_deploy.errors import TargetError

from .loihi import LOIHI, LoihiTarget
from .loihi2 import LOIHI2, Loihi2Target
from .spinnaker import SPINNAKER, SPINNAKER2, SpiNNakerTarget
from .truenorth import TRUENORTH, TrueNorthTarget

TARGETS = {t.name: t for t in (LOIHI, LOIHI2)}
ENERGY_MODELS = {**TARGETS, **{t.name: t for t in (TRUENORTH, SPINNAKER, SPINNAKER2)}}


def get(name: str) -> LoihiTarget:
    """A target export can build for."""
    try:
        return TARGETS[name]
    except KeyError:
        hint = " (energy model only: use it with `ahsar energy --target`)" if name in ENERGY_MODELS else ""
        raise TargetError(f"unknown target {name!r}{hint}: choose one of {', '.join(sorted(TARGETS))}") from None


def energy_model(name: str):
    """Any chip with an energy model (a deploy target or an energy-only chip)."""
    try:
        return ENERGY_MODELS[name]
    except KeyError:
        raise TargetError(f"unknown energy model {name!r}: choose one of "
                          f"{', '.join(sorted(ENERGY_MODELS))}") from None


__all__ = ["TARGETS", "ENERGY_MODELS", "get", "energy_model", "LoihiTarget", "LOIHI",
           "Loihi2Target", "LOIHI2", "TrueNorthTarget", "TRUENORTH", "SpiNNakerTarget",
           "SPINNAKER", "SPINNAKER2"]
