"""Chips the toolchain deploys to or estimates energy for; one module per chip, each a
frozen dataclass with the same field names (grid, limits, energy, each number cited).

TARGETS: chips on Lava's fixed-point grid that `ahsar-export --target` builds for; the
Loihi passes (calibrate, check, map, fidelity, the Loihi energy estimate) take these only.
XYLO_TARGETS: SynSense Xylo chips (hw_targets/xylo.py), built by exporters/xylo.py, run on
rockpool's XyloSim or its emulator, priced by the chip's own compute model; kept apart so
no Loihi pass ever sees one.
ENERGY_MODELS: every chip `ahsar energy --target` can estimate for a Loihi build, TARGETS
included. SpiNNaker and SpiNNaker 2 are energy models only (hw_targets/spinnaker.py).
"""
from __future__ import annotations

from ahsar_deploy.errors import TargetError

from .loihi import LOIHI, LoihiTarget
from .loihi2 import LOIHI2, Loihi2Target
from .spinnaker import SPINNAKER, SPINNAKER2, SpiNNakerTarget
from .truenorth import TRUENORTH, TrueNorthTarget
from .xylo import XYLO_AUDIO2, XyloTarget

TARGETS = {t.name: t for t in (LOIHI, LOIHI2)}
XYLO_TARGETS = {XYLO_AUDIO2.name: XYLO_AUDIO2}
ENERGY_MODELS = {**TARGETS, **{t.name: t for t in (TRUENORTH, SPINNAKER, SPINNAKER2)}}


def is_xylo(name: str | None) -> bool:
    """True for a Xylo target's name (a build's manifest "target", DeployGraph.target)."""
    return name in XYLO_TARGETS


def get(name: str) -> LoihiTarget | XyloTarget:
    """A target export can build for: a LoihiTarget (TARGETS) or a XyloTarget
    (XYLO_TARGETS). Raises TargetError naming the choices."""
    if name in TARGETS:
        return TARGETS[name]
    if name in XYLO_TARGETS:
        return XYLO_TARGETS[name]
    hint = " (energy model only: use it with `ahsar energy --target`)" if name in ENERGY_MODELS else ""
    raise TargetError(f"unknown target {name!r}{hint}: choose one of "
                      f"{', '.join(sorted({**TARGETS, **XYLO_TARGETS}))}")


def energy_model(name: str):
    """Any chip with an energy model for a Loihi build (a deploy target or an energy-only
    chip). A Xylo build is priced by its own model (exporters/xylo.energy), not here."""
    try:
        return ENERGY_MODELS[name]
    except KeyError:
        hint = (" (it prices its own builds only: export with --target xylo-audio2 and run "
                "`ahsar energy` on that build)" if is_xylo(name) else "")
        raise TargetError(f"unknown energy model {name!r}{hint}: choose one of "
                          f"{', '.join(sorted(ENERGY_MODELS))}") from None


__all__ = ["TARGETS", "XYLO_TARGETS", "ENERGY_MODELS", "get", "energy_model", "is_xylo",
           "XyloTarget", "XYLO_AUDIO2", "LoihiTarget", "LOIHI",
           "Loihi2Target", "LOIHI2", "TrueNorthTarget", "TRUENORTH", "SpiNNakerTarget",
           "SPINNAKER", "SPINNAKER2"]
