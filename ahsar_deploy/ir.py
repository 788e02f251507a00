"""The small internal IR passed between stages: a DeployGraph of frozen layer records.

It carries what NIR does not: integer decays, reset mode, the float-or-integer state of
each layer, its integer grid, and the firing rate seen in training.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Layer:
    """Dense synapses into CUBA-LIF neurons (Loihi's discrete-time model, snn.py)."""
    name: str
    weight: np.ndarray            # (n_out, n_in); float64, or integer after calibration
    threshold: np.ndarray         # (n_out,) float64 per neuron (after fold: all equal)
    i_decay: int                  # Loihi current decay register + 1, 0..4096
    v_decay: int                  # Loihi voltage decay register, 0..4096
    reset: str = "zero"           # v <- 0 after a spike; u untouched
    regulated: bool = False       # an AHSAR-regulated hidden layer
    train_rate: float | None = None  # mean firing rate of the float model (test split)
    kind: str = "dense"
    vth: int | None = None        # integer threshold mantissa (None until calibrated)
    weight_exp: int = 0           # effective weight = weight * 2**weight_exp
    weight_bits: int = 8
    scale: float | None = None    # integer units per float unit of the folded layer

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def quantized(self) -> bool:
        return self.vth is not None

    def with_(self, **kw) -> "Layer":
        return replace(self, **kw)


@dataclass(frozen=True)
class DeployGraph:
    layers: tuple[Layer, ...]
    n_inputs: int
    steps: int                    # time steps per sample
    dataset: str
    encoding: str
    method: str
    source_sha256: str
    float_accuracy: float | None = None
    target: str | None = None
    notes: dict = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        return all(l.quantized for l in self.layers)

    def with_(self, **kw) -> "DeployGraph":
        return replace(self, **kw)
