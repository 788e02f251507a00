"""Choose each layer's integer grid on calibration data, layer by layer in order.

For a folded layer (threshold 1), an integer scale k maps it to the target's grid:
weights 2*round(k*W/2) clipped to [-256, 254] (Loihi's 8-bit mixed-sign weights are
even, hw_targets/loihi.py) and threshold mantissa vth = round(k). Candidates for k put
the largest weight, or a high quantile of |W| (clipping the few above it), at the top of
the grid. The candidate whose integer spikes agree best with the float layer, both fed
the spikes the already-quantized earlier layers produce, wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from hw_targets import LoihiTarget

from .. import interrupts
from ..emulator import layer_float, layer_int
from ..errors import TargetError
from ..ir import DeployGraph, Layer

QUANTILES = (1.0, 0.9999, 0.999, 0.998, 0.995, 0.99)


@dataclass(frozen=True)
class LayerReport:
    name: str
    quantile: float | None       # None: scale kept from an earlier calibration
    scale: float
    vth: int
    weights_clipped: int
    spike_agreement: float      # fraction of (sample, step, neuron) equal, int vs float
    spikes_changed: int


def quantize_layer(layer: Layer, k: float, target: LoihiTarget) -> tuple[Layer, int]:
    step = target.weight_step
    raw = np.round(layer.weight * k / step) * step
    w = np.clip(raw, target.weight_min, target.weight_max)
    vth = int(round(k * float(layer.threshold[0])))
    if not 1 <= vth <= target.vth_max:
        raise TargetError(f"calibrate: {layer.name} threshold mantissa {vth} outside "
                          f"1..{target.vth_max} of {target.name}")
    q = layer.with_(weight=w.astype(np.int64), vth=vth, weight_exp=0,
                    weight_bits=target.weight_bits, scale=float(k))
    return q, int(np.count_nonzero(raw != w))


def calibrate(graph: DeployGraph, spikes: np.ndarray, target: LoihiTarget,
              progress: bool = False, scales: list[float] | None = None
              ) -> tuple[DeployGraph, list[LayerReport]]:
    """spikes: (N, T, F) calibration inputs. Returns the integer graph and a report.
    scales: keep these per-layer scales k instead of searching (re-quantization);
    a None entry searches that layer."""
    layers, reports = [], []
    x = spikes
    for i, layer in enumerate(tqdm(graph.layers, desc="calibrate", disable=None if progress else True,
                                   leave=False)):
        if not np.allclose(layer.threshold, layer.threshold[0]):
            raise TargetError(f"calibrate: {layer.name} has per-neuron thresholds; fold first")
        ref = layer_float(layer, x)
        wmax = np.abs(layer.weight)
        best = None
        for qnt in (QUANTILES if scales is None or scales[i] is None else (None,)):
            interrupts.check()
            if qnt is None:
                k = scales[i]
            else:
                top = float(np.quantile(wmax, qnt))
                if top <= 0:
                    continue
                k = target.weight_max / top
            k = min(k, target.vth_max / float(layer.threshold[0]))
            q, clipped = quantize_layer(layer, k, target)
            s = layer_int(q, x, target)
            changed = int(np.count_nonzero(s != ref))
            if best is None or changed < best[0]:
                best = (changed, q, s, LayerReport(layer.name, qnt, k, q.vth, clipped,
                                                   1 - changed / ref.size, changed))
        if best is None:
            raise TargetError(f"calibrate: {layer.name} has all-zero weights")
        _, q, x, rep = best
        layers.append(q)
        reports.append(rep)
    return graph.with_(layers=tuple(layers), target=target.name), reports
