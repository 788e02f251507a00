"""Choose each layer's integer grid on calibration data, layer by layer in order.

For a folded layer (threshold 1), an integer scale k maps it to the target's grid:
weights 2*round(k*W/2) clipped to [-256, 254] (Loihi's 8-bit mixed-sign weights are
even, hw_targets/loihi.py) and threshold mantissa vth = round(k). Candidates for k put
the largest weight, or a high quantile of |W| (clipping the few above it), at the top of
the grid. Every candidate is capped so that the 24-bit states hold the largest |u| and
|v| the float layer reaches on the calibration data with RANGE_MARGIN to spare (u wraps
and v saturates on Loihi, hw_targets/loihi.py). The candidate whose integer spikes
agree best with the float layer, both fed the spikes the already-quantized earlier
layers produce, wins. passes/fidelity.py reports what still differs.
Recurrent weights share the layer's grid (one k, one weight_exp: netx optimises weight
and weight_rec together, lava-dl netx/hdf5.py create_dense) and take part in the
quantiles; a bias becomes round(k*b), Loihi's signed 13-bit bias mantissa in weight units
(bias_exp 6 as netx loads it, hw_targets/loihi.py), and k is capped so that every bias
fits (|round(k*b)| <= 4095). The float ranges that cap k include the recurrent current
and the bias (emulator.layer_float).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from hw_targets import LoihiTarget

from .. import interrupts
from ..emulator import layer_float
from ..torch_emulator import layer_int   # spike for spike emulator.layer_int, faster
from ..errors import TargetError
from ..ir import DeployGraph, Layer

QUANTILES = (1.0, 0.9999, 0.999, 0.998, 0.995, 0.99)
RANGE_MARGIN = 1.25   # integer states may grow 25 % beyond the calibration data's largest


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
    """The folded float layer on the target's integer grid at scale k (integer units per
    float unit): weights and recurrent weights step*round(k*w/step) clipped to the weight
    range, bias round(k*b) clipped to +-bias_max, vth = round(k * threshold). Returns the
    layer and the number of weights and biases clipped. Raises TargetError if vth falls
    outside 1..vth_max."""
    step = target.weight_step
    clipped = 0

    def grid(w: np.ndarray) -> np.ndarray:
        nonlocal clipped
        raw = np.round(np.asarray(w, dtype=np.float64) * k / step) * step
        q = np.clip(raw, target.weight_min, target.weight_max)
        if q.max(initial=0) <= 0:      # Lava holds an all-negative matrix down to -255 (check.py)
            q = np.maximum(q, -target.weight_max)
        clipped += int(np.count_nonzero(raw != q))
        return q.astype(np.int64)

    w = grid(layer.weight)
    rec = None if layer.recurrent is None else grid(layer.recurrent)
    bias = None
    if layer.bias is not None:
        raw = np.round(np.asarray(layer.bias, dtype=np.float64) * k)
        bias = np.clip(raw, -target.bias_max, target.bias_max)
        clipped += int(np.count_nonzero(raw != bias))
        bias = bias.astype(np.int64)
    vth = int(round(k * float(layer.threshold[0])))
    if not 1 <= vth <= target.vth_max:
        raise TargetError(f"calibrate: {layer.name} threshold mantissa {vth} outside "
                          f"1..{target.vth_max} of {target.name}")
    q = layer.with_(weight=w, vth=vth, weight_exp=0, weight_bits=target.weight_bits, scale=float(k),
                    recurrent=rec, bias=bias)
    return q, clipped


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
        ranges: dict = {}
        ref = layer_float(layer, x, ranges=ranges)
        peak = max(ranges.get("u", 0.0), ranges.get("v", 0.0)) * 2 ** target.act_shift * RANGE_MARGIN
        k_range = (target.state_max - 1) / peak if peak > 0 else np.inf
        wmax = np.abs(layer.weight) if layer.recurrent is None else \
            np.concatenate([np.abs(layer.weight).ravel(), np.abs(layer.recurrent).ravel()])
        b_peak = 0.0 if layer.bias is None else float(np.abs(layer.bias).max(initial=0.0))
        k_bias = target.bias_max / b_peak if b_peak > 0 else np.inf
        best = refused = None
        for qnt in (QUANTILES if scales is None or scales[i] is None else (None,)):
            interrupts.check()
            if qnt is None:
                k = scales[i]
            else:
                top = float(np.quantile(wmax, qnt))
                if top <= 0:
                    continue
                k = target.weight_max / top
            k = min(k, target.vth_max / float(layer.threshold[0]), k_range, k_bias)
            try:
                q, clipped = quantize_layer(layer, k, target)
            except TargetError as e:   # e.g. one outlier weight makes vth round to 0: clip it
                refused = e
                continue
            s = layer_int(q, x, target)
            changed = int(np.count_nonzero(s != ref))
            if best is None or changed < best[0]:
                best = (changed, q, s, LayerReport(layer.name, qnt, k, q.vth, clipped,
                                                   1 - changed / ref.size, changed))
        if best is None and refused is not None:
            raise TargetError(f"{refused} for every candidate scale (largest weight down to its "
                              f"{QUANTILES[-1]:.0%} quantile)")
        if best is None:
            raise TargetError(f"calibrate: {layer.name} has all-zero weights")
        _, q, x, rep = best
        layers.append(q)
        reports.append(rep)
    return graph.with_(layers=tuple(layers), target=target.name), reports
