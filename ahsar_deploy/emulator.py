"""Reference simulators of a DeployGraph, batched over samples (numpy; run() hands integer
runs to the faster, spike-for-spike equal torch_emulator unless device=None).

run_float: the float CUBA-LIF model of snn.py, in float64 (the neuron update of a layer
           without recurrence in lif_kernel.lif_float's fused loop: bitwise the numpy loop).
run_int:   Lava's bit-accurate fixed-point Dense + LIF models, step for step
           (lava/proc/lif/models.py AbstractPyLifModelFixed.subthr_dynamics,
           ../shared/HARDWARE.md section 1), without Lava's one-step delay per layer:
           each sample starts from zero state, as netx's LIFReset gives per sample.
Both return a list of per-layer spike arrays (N, T, n_out) of bool.
Conv layers (Lava's Conv process, lava/proc/conv/models.py PyConvModelFixed): the
synaptic input is torch's conv2d of the spikes, computed in float64 (exact: integer
sums far below 2**53), wrapped to signed 24 bits as Lava's conv output is, then << 6.
Conv ignores weight_exp in Lava, so a conv layer must have weight_exp 0 (passes/check.py).

Recurrent weights R and biases b (Layer.recurrent, Layer.bias), per step t:
    u[t] = du*u[t-1] + W x[t] + R s[t-1],   v[t] = dv*v[t-1] + u[t] + b,   s[-1] = 0.
R s[t-1]: the layer's spike at step t-1 reaches its own current at step t, one step
later, as a feed-forward spike reaches the next layer. In Lava, netx's RecurrentDense
(lava-dl src/lava/lib/dl/netx/blocks/process.py) connects neuron.s_out -> synapse_rec.s_in
and synapse_rec.a_out -> neuron.a_in, and a Dense sends, in each step, the a_buff it
accumulated in the step before, before it receives that step's spikes
(lava/proc/dense/models.py AbstractPyDenseModelBitAcc.run_spk: `self.a_out.send(self.a_buff)`,
then `s_in = self.s_in.recv()`): so LIF receives R s[t-1] at t. The LIF's a_in sums
both Dense outputs (lava/magma/core/model/py/ports.py PyInPortVectorDense.recv), each
already shifted by the layer's one weight_exp (netx hdf5.py create_dense optimises
weight and weight_rec together), then shifts the sum << 6.
Bias, integer: Lava's LIF adds effective_bias = bias_mant << bias_exp to v, after the
decay and u, before the 24-bit clip (lava/proc/lif/models.py AbstractPyLifModelFixed
scale_bias and subthr_dynamics: `decayed_volt + self.u + self.effective_bias`); netx
loads a layer's `bias` as bias_mant with bias_exp = 6 (netx/hdf5.py get_neuron_params),
so an integer Layer.bias is in weight units, the units of W x, and enters v as b << 6.
netx's LIFReset zeroes u and v per sample but not a recurrent Dense's a_buff:
exporters/lava.py clears it at each sample's first step, so s[-1] = 0 holds there too.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from hw_targets import LoihiTarget, LOIHI

from . import interrupts
from .ir import DeployGraph, Layer


CHUNK_ELEMENTS = 1 << 23      # per chunk of samples: N * T * n_out (64 MiB of float64)


def _chunked(fn):
    """Run a layer function over chunks of samples, so a conv layer on a large set (e.g.
    6000 x 16 steps x 6272 neurons) never holds its whole float64 input current."""
    def wrapper(layer: Layer, x: np.ndarray, *args, **kw) -> np.ndarray:
        per_sample = max(1, x.shape[1] * layer.n_out)
        step = max(1, CHUNK_ELEMENTS // per_sample)
        if x.shape[0] <= step:
            return fn(layer, x, *args, **kw)
        parts = []
        for i in range(0, x.shape[0], step):
            interrupts.check()
            parts.append(fn(layer, x[i:i + step], *args, **kw))
        return np.concatenate(parts)
    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


def _zero_reset(layer: Layer) -> None:
    """Loihi's neuron resets v to zero; a layer trained with another reset (Xylo's
    subtraction, exporters/xylo.py) must not run here as if it did."""
    if layer.reset != "zero":
        raise ValueError(f"{layer.name}: reset {layer.reset!r}; this emulator models Loihi's reset to "
                         f"zero (use exporters.xylo.run_float / run_emulator for Xylo's neuron)")


_FLOAT_RUNS: "OrderedDict[bytes, tuple[np.ndarray, dict]]" = OrderedDict()   # layer_float's last results
_FLOAT_RUNS_KEPT = 8


def _float_key(layer: Layer, x: np.ndarray) -> bytes:
    """A digest of everything layer_float's result depends on: the layer's parameters and x."""
    h = hashlib.sha1(usedforsecurity=False)      # a cache key, not a seal: the fastest hash here
    h.update(repr((layer.kind, layer.i_decay, layer.v_decay, layer.in_shape, layer.stride, layer.padding,
                   layer.reset, layer.max_events)).encode())
    for a in (layer.weight, layer.threshold, layer.recurrent, layer.bias, x):
        if a is None:
            h.update(b"-")
            continue
        a = np.ascontiguousarray(a)               # the same bytes in another shape or dtype differ
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.digest()


@_chunked
def layer_float(layer: Layer, x: np.ndarray, ranges: dict | None = None) -> np.ndarray:
    """Float CUBA-LIF layer on spikes x (N, T, n_in) -> spikes (N, T, n_out) bool.
    ranges: if a dict, its "u" and "v" become the largest |u| and |v| (v before reset) seen,
    in the layer's float units (passes/calibrate.py keeps the integer states in range).
    An export runs the same float layer on the same calibration inputs in calibrate,
    fidelity and refit: the last few results are kept, keyed by a digest of the layer's
    parameters and x (_float_key), and a repeated call returns a copy of the kept one."""
    _zero_reset(layer)
    key = _float_key(layer, x)
    if key in _FLOAT_RUNS:
        out, seen = _FLOAT_RUNS[key]
        if ranges is not None:
            for k, v in seen.items():
                ranges[k] = max(ranges.get(k, 0.0), v)
        return out.copy()
    seen: dict = {}
    out = _layer_float(layer, x, seen)
    if ranges is not None:
        for k, v in seen.items():
            ranges[k] = max(ranges.get(k, 0.0), v)
    _FLOAT_RUNS[key] = (out.copy(), seen)
    while len(_FLOAT_RUNS) > _FLOAT_RUNS_KEPT:
        _FLOAT_RUNS.popitem(last=False)
    return out


def _layer_float(layer: Layer, x: np.ndarray, ranges: dict) -> np.ndarray:
    cur = layer.synaptic_input(x)
    du = 1.0 - layer.i_decay / 4096.0
    dv = 1.0 - layer.v_decay / 4096.0
    th = layer.neuron_thresholds()
    rec = None if layer.recurrent is None else np.asarray(layer.recurrent, dtype=np.float64).T
    bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    if rec is None:   # one fused loop (numba), the same float operations in the same order
        from .lif_kernel import lif_float
        out = np.empty(cur.shape, dtype=bool)
        pu, pv = lif_float(np.ascontiguousarray(cur, dtype=np.float64), du, dv,
                           np.broadcast_to(th, cur.shape[-1:]), bias, out)
        ranges["u"] = max(ranges.get("u", 0.0), pu)
        ranges["v"] = max(ranges.get("v", 0.0), pv)
        return out
    u = np.zeros((cur.shape[0], cur.shape[2]))
    v = np.zeros_like(u)
    out = np.zeros(cur.shape, dtype=bool)
    s = np.zeros(u.shape, dtype=bool)
    for t in range(cur.shape[1]):
        interrupts.check()
        u = du * u + cur[:, t] + s @ rec
        v = dv * v + u if bias is None else dv * v + u + bias
        ranges["u"] = max(ranges.get("u", 0.0), float(np.abs(u).max(initial=0.0)))
        ranges["v"] = max(ranges.get("v", 0.0), float(np.abs(v).max(initial=0.0)))
        s = v > th
        v[s] = 0.0
        out[:, t] = s
    return out


def run_float_snntorch_delayed(graph: DeployGraph, spikes: np.ndarray, delayed: set[str]) -> list[np.ndarray]:
    """The float model, but the layers named in `delayed` reset as snnTorch 1.0's Synaptic,
    RSynaptic and RLeaky do with reset_mechanism="zero" and reset_delay=True: on the step
    after a spike v is 0, that step's input included (snntorch/_neurons/synaptic.py
    _base_zero, mem[t] = (beta mem[t-1] + syn[t]) (1 - (mem[t-1] > threshold)); u is not
    reset); the other layers as layer_float. spikes (N, T, F) 0/1 -> per-layer spikes
    (N, T, n_out) bool. Used to measure what deploying such a layer with Loihi's reset
    changes (exporters/nir_import.py DELAYED_RESET; tests/test_frameworks_snntorch.py
    checks it against snnTorch spike for spike)."""
    out, h = [], spikes
    for layer in graph.layers:
        if layer.name not in delayed:
            h = layer_float(layer, h)
            out.append(h)
            continue
        _zero_reset(layer)
        cur = layer.synaptic_input(h)
        du, dv = 1.0 - layer.i_decay / 4096.0, 1.0 - layer.v_decay / 4096.0
        th = layer.neuron_thresholds()
        rec = None if layer.recurrent is None else np.asarray(layer.recurrent, dtype=np.float64).T
        u = np.zeros((cur.shape[0], cur.shape[2]))
        v, s = np.zeros_like(u), np.zeros(u.shape, dtype=bool)
        h = np.zeros(cur.shape, dtype=bool)
        for t in range(cur.shape[1]):
            interrupts.check()
            u = du * u + cur[:, t] + (0.0 if rec is None else s @ rec)
            v = dv * v + u + (0.0 if layer.bias is None else layer.bias)
            v[s] = 0.0                  # the step after a spike: v and this step's input zeroed
            s = v > th
            v[s] = 0.0
            h[:, t] = s
        out.append(h)
    return out


def _trunc_decay(x: np.ndarray, keep: int) -> np.ndarray:
    """x * keep / 4096 rounded toward zero (sign * (|x*keep| >> 12))."""
    y = x * keep
    return np.sign(y) * (np.abs(y) >> 12)


def synaptic_int(layer: Layer, x: np.ndarray, target: LoihiTarget = LOIHI) -> np.ndarray:
    """Integer synaptic output (N, T, n_out) before LIF's << 6 (Lava's a_out)."""
    m = target.state_max
    if layer.kind == "conv":
        if layer.weight_exp != 0:
            raise ValueError(f"{layer.name}: Lava's conv ignores weight_exp; it must be 0")
        w = np.asarray(layer.weight)
        # float32 is exact (and several times faster) for binary spikes when every partial
        # sum is an integer below 2**24, as Lava's own conv assumes (passes/check.py)
        exact32 = (np.abs(w).sum(axis=tuple(range(1, w.ndim))).max(initial=0) < 2 ** 24
                   and np.array_equal(w, np.rint(w)) and np.isin(x, (0, 1)).all())
        a = np.rint(layer.synaptic_input(x, np.float32 if exact32 else np.float64)).astype(np.int64)
        return (a + m) % (2 * m) - m                     # signed 24-bit wrap (signed_clamp)
    # BLAS product, exact: float32 while every partial sum stays below 2**24, else float64
    # (exact below 2**53 for any layer within the target's limits)
    bound = float(np.abs(layer.weight).sum(axis=1).max(initial=0)) * float(np.abs(x).max(initial=0))
    a = np.rint(layer.synaptic_input(x, np.float32 if bound < 2 ** 24 else np.float64)).astype(np.int64)
    return _exp_shift(a, layer.weight_exp)


def _exp_shift(a: np.ndarray, weight_exp: int) -> np.ndarray:
    """Dense a_out = a << weight_exp (>> for a negative exponent, rounding toward -inf)."""
    return a << weight_exp if weight_exp >= 0 else a >> -weight_exp


@_chunked
def layer_int(layer: Layer, x: np.ndarray, target: LoihiTarget = LOIHI,
              events: dict | None = None) -> np.ndarray:
    """Lava's fixed-point layer on spikes x (N, T, n_in) -> spikes (N, T, n_out) bool.
    Integer recurrent weights (n_out, n_out) and bias (n_out,) as in the module docstring.
    events: if a dict, "u_wrap" and "v_saturate" are increased by the neuron-steps where
    the 24-bit current wrapped and the voltage was clipped (passes/fidelity.py).
    Raises ValueError for a layer that is not quantized."""
    _zero_reset(layer)
    if layer.vth is None:
        raise ValueError(f"{layer.name}: not quantized")
    m = target.state_max
    a = synaptic_int(layer, x, target) << target.act_shift
    vth = np.int64(layer.vth) << target.vth_shift
    keep_u = target.decay_unity - layer.i_decay      # 4096 - (du + 1)
    keep_v = target.decay_unity - layer.v_decay      # 4096 - dv
    # float64 products of 0/1 spikes and integer weights are exact (sums << 2**53)
    rec = None if layer.recurrent is None else np.asarray(layer.recurrent, dtype=np.float64).T
    bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.int64) << target.bias_exp
    u = np.zeros((a.shape[0], a.shape[2]), dtype=np.int64)
    v = np.zeros_like(u)
    out = np.zeros(a.shape, dtype=bool)
    s = np.zeros(u.shape, dtype=bool)
    for t in range(a.shape[1]):
        interrupts.check()
        a_t = a[:, t] if rec is None else \
            a[:, t] + (_exp_shift(np.rint(s @ rec).astype(np.int64), layer.weight_exp) << target.act_shift)
        dc = _trunc_decay(u, keep_u) + a_t
        u = np.where(dc > m, dc - 2 * m, dc)          # u wraps (Lava's two-sided where)
        u = np.where(u <= -m, dc + 2 * m, u)
        v_raw = _trunc_decay(v, keep_v) + u if bias is None else _trunc_decay(v, keep_v) + u + bias
        v = np.clip(v_raw, -m + 1, m - 1)             # v saturates
        if events is not None:
            events["u_wrap"] = events.get("u_wrap", 0) + int(np.count_nonzero(u != dc))
            events["v_saturate"] = events.get("v_saturate", 0) + int(np.count_nonzero(v != v_raw))
        s = v > vth
        v[s] = 0
        out[:, t] = s
    return out


def float_view(graph: DeployGraph) -> DeployGraph:
    """The float model of a quantized graph in integer units (what model.nir carries):
    weights W_int * 2**weight_exp (recurrent ones too), thresholds vth, biases b_int (weight
    units: Lava adds b << 6 to v as it adds (W x) << 6 to u), exact float decays (no truncation);
    float graphs as they are."""
    layers = []
    for l in graph.layers:
        if l.vth is not None:
            e = 2.0 ** l.weight_exp
            w = np.asarray(l.weight, dtype=np.float64) * e
            rec = None if l.recurrent is None else np.asarray(l.recurrent, dtype=np.float64) * e
            bias = None if l.bias is None else np.asarray(l.bias, dtype=np.float64)
            l = l.with_(weight=w, threshold=np.full(l.channels, float(l.vth)), vth=None, weight_exp=0,
                        recurrent=rec, bias=bias)
        layers.append(l)
    return graph.with_(layers=tuple(layers))


def run(graph: DeployGraph, spikes: np.ndarray, integer: bool | None = None,
        device: str | None = "cpu") -> list[np.ndarray]:
    """Run all layers on input spikes (N, T, F); integer defaults to graph.quantized.
    Integer runs go to torch_emulator.run on `device` (blocks of samples, integer matrix
    products; spike for spike equal to this module's layer_int, tests/test_torch_emulator.py);
    device=None runs this module's numpy reference, layer by layer. Float runs are numpy's."""
    integer = graph.quantized if integer is None else integer
    if integer and device is not None:
        from . import torch_emulator
        return torch_emulator.run(graph, spikes, device=device)
    step = layer_int if integer else layer_float
    out, h = [], spikes
    for layer in graph.layers:
        h = step(layer, h)
        out.append(h)
    return out
