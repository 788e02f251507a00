"""Fold per-neuron / per-layer thresholds into one shared threshold per layer.

METHODS.md section 5: with reset to zero, scaling a neuron's threshold, incoming
weights, bias and state by the same positive factor leaves every spike time unchanged,
for any current and voltage decay. Neuron i's incoming weights are scaled by
theta_ref / theta_i, with theta_ref = 1 for every layer.
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
        if th.shape != (layer.n_out,) or not np.all(np.isfinite(th)) or np.any(th <= 0):
            raise DeployError(f"fold: {layer.name} needs {layer.n_out} positive finite thresholds")
        with np.errstate(over="ignore"):
            w = layer.weight * (THETA_REF / th)[:, None]
        if not np.all(np.isfinite(w)):
            raise DeployError(f"fold: {layer.name} weights overflow when divided by its thresholds "
                              f"(min threshold {th.min():.3g}); the model cannot be deployed")
        layers.append(layer.with_(weight=w, threshold=np.full(layer.n_out, THETA_REF)))
    return graph.with_(layers=tuple(layers))
