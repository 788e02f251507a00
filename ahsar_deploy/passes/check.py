"""Design rules of a target, checked on an integer graph. Each names layer, value, limit.
Core limits (fan-in, fan-out, memory, cores) are the map pass's (passes/map.py)."""
from __future__ import annotations

import numpy as np

from hw_targets import LoihiTarget

from ..errors import TargetError
from ..ir import DeployGraph
from .map import map_cores, map_layers


def check(graph: DeployGraph, target: LoihiTarget) -> DeployGraph:
    """The integer graph's design rules for target (a recurrent layer's weights are checked
    as its feed-forward ones, on one grid; its input range sums both, as Lava's LIF sums
    both Dense outputs in a_in before the << 6; biases against the signed 13-bit mantissa,
    hw_targets/loihi.py), then map_cores. Raises TargetError naming layer, rule and limit."""
    for l in graph.layers:
        w = np.asarray(l.weight).reshape(l.channels, -1)
        if l.recurrent is not None:
            w = np.concatenate([w, np.asarray(l.recurrent)], axis=1)
        w_abs_sum = np.abs(w).sum(axis=1).max()
        b = np.zeros(1, dtype=np.int64) if l.bias is None else np.asarray(l.bias)
        if l.kind == "conv":
            # Lava's conv (lava/proc/conv/utils.py) computes in float32: exact while every
            # partial sum stays below 2**24; netx stores stride/padding as 8-bit values.
            shape_ok = l.in_shape is not None and len(l.in_shape) == 3 and min(l.out_shape) >= 1
            conv_rules = [
                ("conv shape", shape_ok, f"in_shape {l.in_shape} gives output {l.out_shape if shape_ok else '?'}"),
                ("conv weight exponent", l.weight_exp == 0, f"weight_exp={l.weight_exp}; Lava's conv has none"),
                ("conv float32 exactness", int(w_abs_sum) < 2 ** 24,
                 f"summed |kernel| {int(w_abs_sum)} >= 2**24 (Lava's conv sums in float32)"),
                ("conv stride/padding", all(1 <= s <= 127 for s in l.stride) and all(0 <= p <= 127 for p in l.padding),
                 f"stride {l.stride}, padding {l.padding}, limit 1..127 / 0..127"),
            ]
        else:
            conv_rules = []
        rules = conv_rules + [
            ("quantized", l.vth is not None, "calibrate before check"),
            ("vth range", l.vth is not None and 1 <= l.vth <= target.vth_max,
             f"vth={l.vth}, limit 1..{target.vth_max}"),
            ("weight range", w.min() >= target.weight_min and w.max() <= target.weight_max,
             f"weights in [{w.min()}, {w.max()}], limit [{target.weight_min}, {target.weight_max}]"),
            ("weight grid", np.all(w % target.weight_step == 0), f"weights must be multiples of {target.weight_step}"),
            ("inhibitory weights", all(target.netx_inhibitory_ok(w, m) for m in _matrices(l)),
             "an all-negative weight matrix whose most negative weight reaches -256 after netx's shift, "
             "which Lava clips to -255 (recalibrate, or give the matrix one positive weight)"),
            ("bias range", np.array_equal(b, np.round(b)) and b.min() >= -target.bias_max - 1
             and b.max() <= target.bias_max,
             f"biases in [{b.min()}, {b.max()}], limit integers in [{-target.bias_max - 1}, {target.bias_max}]"),
            *_decay_rules(l, target),
            # worst case synaptic input must not overflow int32 after the << 6 shift
            ("input range", int(w_abs_sum) << target.act_shift < 2 ** 31,
             "summed |weights| << 6 overflows int32"),
        ]
        for rule, ok, detail in rules:
            if not ok:
                raise TargetError(f"check: {l.name} breaks {target.name} rule '{rule}': {detail}")
    return map_cores(graph, target)


def _matrices(l) -> list[np.ndarray]:
    """A layer's weight matrices as Lava's Dense processes hold them (2-d)."""
    return [np.asarray(l.weight).reshape(l.channels, -1)] + ([] if l.recurrent is None else [np.asarray(l.recurrent)])


def check_size(graph: DeployGraph, target: LoihiTarget) -> None:
    """The rules known before calibration: decays, no bias on a conv layer (netx gives a
    conv layer one bias per channel, the IR one per neuron; not deployed), and those that
    need only layer shapes (fan-in, memory, cores). Raises TargetError naming the rule,
    layer, value and limit."""
    for l in graph.layers:
        if l.kind == "conv" and l.bias is not None:
            raise TargetError(f"check: {l.name}: a bias on a conv layer is not deployed; train the "
                              "convolution without bias (biases deploy on dense layers)")
        for rule, ok, detail in _decay_rules(l, target):
            if not ok:
                raise TargetError(f"check: {l.name} breaks {target.name} rule '{rule}': {detail}")
    map_layers(graph, target)


def _decay_rules(l, target: LoihiTarget) -> list[tuple[str, bool, str]]:
    return [("current decay", 1 <= l.i_decay <= target.decay_unity,
             f"i_decay={l.i_decay}, limit 1..{target.decay_unity}"),
            ("voltage decay", 0 <= l.v_decay < target.decay_unity,
             f"v_decay={l.v_decay}, limit 0..{target.decay_unity - 1} (12-bit dv)")]
