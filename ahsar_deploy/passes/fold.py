"""Fold per-neuron / per-layer thresholds into one shared threshold per layer.

METHODS.md section 5: with reset to zero (and equally with reset by subtraction of the
threshold, Xylo's neuron), scaling a neuron's threshold, incoming weights, bias and state
by the same positive factor leaves every spike time and event count unchanged, for any
current and voltage decay. Neuron i's incoming weights are scaled by
theta_ref / theta_i, with theta_ref = 1 for every layer; for a convolution the
threshold is per output channel and channel c's kernel is scaled by theta_ref / theta_c.
A recurrent layer's incoming recurrent weights (row i of Layer.recurrent) and its bias
b_i are scaled by the same factor: they add to neuron i's current and voltage in the
units of its weights (ir.py), while the spikes they come from stay 0/1.
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
        row = factor.reshape(n, 1)
        with np.errstate(over="ignore"):
            w = layer.weight * factor
            rec = None if layer.recurrent is None else np.asarray(layer.recurrent, dtype=np.float64) * row
            bias = None if layer.bias is None else \
                np.asarray(layer.bias, dtype=np.float64) * np.repeat(row[:, 0], layer.n_out // n)
        if not all(np.all(np.isfinite(a)) for a in (w, rec, bias) if a is not None):
            raise DeployError(f"fold: {layer.name} weights or bias overflow when divided by its thresholds "
                              f"(min threshold {th.min():.3g}); the model cannot be deployed")
        layers.append(layer.with_(weight=w, threshold=np.full(n, THETA_REF), recurrent=rec, bias=bias))
    return graph.with_(layers=tuple(layers))
