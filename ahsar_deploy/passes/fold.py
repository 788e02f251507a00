"""Fold per-neuron / per-layer thresholds into one shared threshold per layer.

METHODS.md section 5: with reset to zero, scaling a neuron's threshold, incoming
weights, bias and state by the same positive factor leaves every spike time unchanged,
for any current and voltage decay. Neuron i's incoming weights are scaled by
theta_ref / theta_i, with theta_ref = 1 for every layer; for a convolution the
threshold is per output channel and channel c's kernel is scaled by theta_ref / theta_c.
"""
from __future__ import annotations

import numpy as np

from ..errors import DeployError
from ..ir import DeployGraph

THETA_REF = 1.0


def fold(graph: DeployGraph) -> DeployGraph:
    layers = []
    for layer in graph.layers:
        th = np.asarray(layer.threshold, dtype=np.float64)
        n = layer.channels
        if th.shape != (n,) or not np.all(np.isfinite(th)) or np.any(th <= 0):
            what = "output channels" if layer.kind == "conv" else "neurons"
            raise DeployError(f"fold: {layer.name} needs {n} positive finite thresholds (one per "
                              f"{what}), got shape {th.shape}")
        factor = (THETA_REF / th).reshape((n,) + (1,) * (layer.weight.ndim - 1))
        with np.errstate(over="ignore"):
            w = layer.weight * factor
        if not np.all(np.isfinite(w)):
            raise DeployError(f"fold: {layer.name} weights overflow when divided by its thresholds "
                              f"(min threshold {th.min():.3g}); the model cannot be deployed")
        layers.append(layer.with_(weight=w, threshold=np.full(n, THETA_REF)))
    return graph.with_(layers=tuple(layers))
