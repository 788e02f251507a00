"""The emulators' neuron updates as fused loops compiled by numba: Lava's fixed-point LIF
(emulator.layer_int's per-step update; lif_fixed, the CPU path of torch_emulator) and the
float CUBA-LIF of emulator.layer_float (lif_float).

The torch version of the update makes about ten passes over a block's float64 state per
time step; lif_fixed makes one, in int64, with the state of a sample in cache. It is spike
for spike equal to emulator.layer_int (tests/test_torch_emulator.py) and counts the same
events. The maths, per neuron and step t (lava/proc/lif/models.py
AbstractPyLifModelFixed.subthr_dynamics, ../shared/HARDWARE.md section 1):
    a   = ((g * acc[t]) << e  (>> -e rounding to -inf for e < 0)
           + (R s[t-1]) shifted the same) << act_shift
    dc  = sign(u * keep_u) * (|u * keep_u| >> 12) + a
    u   = dc - 2m if dc > m else dc;  u = dc + 2m if u <= -m   (Lava's two-sided where)
    v'  = sign(v * keep_v) * (|v * keep_v| >> 12) + u + bias;   v = clip(v', -m + 1, m - 1)
    s   = v > vth;  v = 0 where s
with m = 2**23 (24-bit state), keep = 4096 - decay. Sums stay far below 2**63.
The first call compiles (a few seconds); the result is cached next to this file
(numba cache=True) and `make install` compiles both loops once (warm()).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _lif_fixed(acc, g, w_exp, act_shift, rec, bias, keep_u, keep_v, m, vth, out, counts):
    n_b, n_t, n = acc.shape
    has_rec = rec.shape[0] > 0
    has_bias = bias.shape[0] > 0
    racc = np.zeros(n, np.int64)
    u = np.empty(n, np.int64)
    v = np.empty(n, np.int64)
    wraps = 0
    sats = 0
    for b in range(n_b):
        u[:] = 0
        v[:] = 0
        for t in range(n_t):
            if has_rec:                  # R s[t-1], event-driven: one row per spike
                racc[:] = 0
                if t > 0:
                    for i in range(n):
                        if out[b, t - 1, i]:
                            for j in range(n):
                                racc[j] += rec[i, j]
            for j in range(n):
                a = np.int64(acc[b, t, j]) * g
                a = (a << w_exp) if w_exp >= 0 else (a >> -w_exp)
                if has_rec:
                    r = racc[j]
                    a += (r << w_exp) if w_exp >= 0 else (r >> -w_exp)
                a = a << act_shift
                y = u[j] * keep_u
                d = np.abs(y) >> 12
                dc = (-d if y < 0 else d) + a
                uj = dc - 2 * m if dc > m else dc
                uj = dc + 2 * m if uj <= -m else uj
                wraps += uj != dc
                u[j] = uj
                y = v[j] * keep_v
                d = np.abs(y) >> 12
                vr = (-d if y < 0 else d) + uj
                if has_bias:
                    vr += bias[j]
                vj = min(max(vr, -m + 1), m - 1)
                sats += vj != vr
                s = vj > vth
                out[b, t, j] = s
                v[j] = 0 if s else vj
    counts[0] += wraps
    counts[1] += sats


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _lif_float(cur, du, dv, th, bias, out, peaks):
    n_b, n_t, n = cur.shape
    has_bias = bias.shape[0] > 0
    u = np.empty(n)
    v = np.empty(n)
    pu = peaks[0]
    pv = peaks[1]
    for b in range(n_b):
        u[:] = 0.0
        v[:] = 0.0
        for t in range(n_t):
            for j in range(n):
                uj = du * u[j] + cur[b, t, j]
                vj = dv * v[j] + uj
                if has_bias:
                    vj = vj + bias[j]
                pu = max(pu, abs(uj))
                pv = max(pv, abs(vj))
                s = vj > th[j]
                out[b, t, j] = s
                u[j] = uj
                v[j] = 0.0 if s else vj
    peaks[0] = pu
    peaks[1] = pv


def lif_float(cur: np.ndarray, du: float, dv: float, th: np.ndarray, bias: np.ndarray | None,
              out: np.ndarray) -> tuple[float, float]:
    """The float CUBA-LIF update of emulator.layer_float (snn.py's neuron in float64) over a
    block of samples, in place, with the same operations in the same order (no fused
    multiply-add), so the spikes are bitwise numpy's (tests/test_emulator.py). For finite
    values: with a NaN the peaks differ from the numpy loop's (which skips such a step);
    the importers refuse non-finite weights and inputs before any run.

    cur: (B, T, n) float64 synaptic input W x; du, dv: the decay factors 1 - decay / 4096;
    th: (n,) float64 thresholds; bias: (n,) float64 or None; out: (B, T, n) bool, written.
        u = du * u + cur[t];  v = dv * v + u (+ bias);  s = v > th;  v = 0 where s.
    Returns the largest |u| and |v| (v before the reset) seen. Releases the GIL."""
    peaks = np.zeros(2)
    _lif_float(cur, float(du), float(dv), np.ascontiguousarray(th, dtype=np.float64),
               np.zeros(0) if bias is None else np.ascontiguousarray(bias, dtype=np.float64), out, peaks)
    return float(peaks[0]), float(peaks[1])


def lif_fixed(acc: np.ndarray, g: int, w_exp: int, act_shift: int, rec: np.ndarray | None,
              bias: np.ndarray | None, keep_u: int, keep_v: int, m: int, vth: int,
              out: np.ndarray) -> tuple[int, int]:
    """Run the fixed-point LIF update over a block of samples, in place.

    acc: (B, T, n) int32 or int64, the synaptic sums W x before the weight exponent (divided
    by g: torch_emulator's int8 product). rec: (n, n) int64 R transposed (row i: what neuron
    i's spike adds), or None. bias: (n,) int64, already << bias_exp, or None. keep_u, keep_v:
    4096 - decay; m: 2**23; vth: the threshold already << vth_shift. out: (B, T, n) bool,
    written. Returns (u wraps, v saturations) as neuron-step counts. Releases the GIL."""
    counts = np.zeros(2, np.int64)
    n = acc.shape[-1]
    _lif_fixed(acc, np.int64(g), np.int64(w_exp), np.int64(act_shift),
               np.zeros((0, n), np.int64) if rec is None else rec,
               np.zeros(0, np.int64) if bias is None else bias,
               np.int64(keep_u), np.int64(keep_v), np.int64(m), np.int64(vth), out, counts)
    return int(counts[0]), int(counts[1])


def warm() -> None:
    """Compile both loops for the argument types the emulators pass (int32 and int64 sums,
    float64 currents), so the first export does not wait for numba (`make install` runs this)."""
    out = np.zeros((1, 2, 3), bool)
    for dtype in (np.int32, np.int64):
        lif_fixed(np.ones((1, 2, 3), dtype), 1, 0, 6, np.zeros((3, 3), np.int64), np.zeros(3, np.int64),
                  4000, 4000, 2 ** 23, 64, out)
        lif_fixed(np.ones((1, 2, 3), dtype), 1, 0, 6, None, None, 4000, 4000, 2 ** 23, 64, out)
    lif_float(np.ones((1, 2, 3)), 0.5, 0.5, np.ones(3), None, out)


if __name__ == "__main__":
    warm()
