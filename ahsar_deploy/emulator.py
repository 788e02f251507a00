"""Reference simulators of a DeployGraph, batched over samples (numpy).

run_float: the float CUBA-LIF model of snn.py, in float64.
run_int:   Lava's bit-accurate fixed-point Dense + LIF models, step for step
           (lava/proc/lif/models.py AbstractPyLifModelFixed.subthr_dynamics,
           ../shared/HARDWARE.md section 1), without Lava's one-step delay per layer:
           each sample starts from zero state, as netx's LIFReset gives per sample.
Both return a list of per-layer spike arrays (N, T, n_out) of bool.
"""
from __future__ import annotations

import numpy as np

from hw_targets import LoihiTarget, LOIHI

from .ir import DeployGraph, Layer


def _matmul(x: np.ndarray, w: np.ndarray, dt) -> np.ndarray:
    """(N, T, F) @ (n, F).T as one 2-D GEMM (numpy would otherwise run N small ones)."""
    n, t, f = x.shape
    return (x.reshape(n * t, f).astype(dt) @ w.astype(dt).T).reshape(n, t, -1)


def layer_float(layer: Layer, x: np.ndarray) -> np.ndarray:
    cur = _matmul(x, layer.weight, np.float64)
    du = 1.0 - layer.i_decay / 4096.0
    dv = 1.0 - layer.v_decay / 4096.0
    th = layer.threshold.astype(np.float64)
    u = np.zeros(cur[:, 0].shape)
    v = np.zeros_like(u)
    out = np.zeros(cur.shape, dtype=bool)
    for t in range(cur.shape[1]):
        u = du * u + cur[:, t]
        v = dv * v + u
        s = v > th
        v[s] = 0.0
        out[:, t] = s
    return out


def _trunc_decay(x: np.ndarray, keep: int) -> np.ndarray:
    """x * keep / 4096 rounded toward zero (sign * (|x*keep| >> 12))."""
    y = x * keep
    return np.sign(y) * (np.abs(y) >> 12)


def _int_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact integer x @ w.T through BLAS: float32 when every partial sum is below 2**24
    (float32 holds such integers exactly), float64 (exact below 2**53) otherwise."""
    bound = float(np.abs(w).sum(axis=1).max(initial=0)) * float(np.abs(x).max(initial=0))
    dt = np.float32 if bound < 2 ** 24 else np.float64
    return np.rint(_matmul(x, w, dt)).astype(np.int64)


def layer_int(layer: Layer, x: np.ndarray, target: LoihiTarget = LOIHI) -> np.ndarray:
    if layer.vth is None:
        raise ValueError(f"{layer.name}: not quantized")
    a = _int_matmul(x, layer.weight)
    a = a << layer.weight_exp if layer.weight_exp >= 0 else a >> -layer.weight_exp
    a = a << target.act_shift
    vth = np.int64(layer.vth) << target.vth_shift
    m = target.state_max
    keep_u = target.decay_unity - layer.i_decay      # 4096 - (du + 1)
    keep_v = target.decay_unity - layer.v_decay      # 4096 - dv
    u = np.zeros(a[:, 0].shape, dtype=np.int64)
    v = np.zeros_like(u)
    out = np.zeros(a.shape, dtype=bool)
    for t in range(a.shape[1]):
        dc = _trunc_decay(u, keep_u) + a[:, t]
        u = np.where(dc > m, dc - 2 * m, dc)          # u wraps (Lava's two-sided where)
        u = np.where(u <= -m, dc + 2 * m, u)
        v = np.clip(_trunc_decay(v, keep_v) + u, -m + 1, m - 1)   # v saturates
        s = v > vth
        v[s] = 0
        out[:, t] = s
    return out


def run(graph: DeployGraph, spikes: np.ndarray, integer: bool | None = None) -> list[np.ndarray]:
    """Run all layers on input spikes (N, T, F); integer defaults to graph.quantized."""
    integer = graph.quantized if integer is None else integer
    step = layer_int if integer else layer_float
    out, h = [], spikes
    for layer in graph.layers:
        h = step(layer, h)
        out.append(h)
    return out
