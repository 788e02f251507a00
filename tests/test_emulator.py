"""The integer model on hand-computed cases (Lava's fixed-point LIF equations); the float
layer's fused loop against the numpy loop, and its cache of results."""
import numpy as np
import pytest

from ahsar_deploy import emulator
from ahsar_deploy.emulator import layer_int
from ahsar_deploy.ir import Layer


def one_neuron(w, i_decay, v_decay, vth):
    return Layer(name="n", weight=np.array([[w]]), threshold=np.ones(1),
                 i_decay=i_decay, v_decay=v_decay, vth=vth)


def test_hand_computed_trace():
    # w=10 -> u gets 10<<6 = 640 per spike. i_decay=2048 keeps half of u, v_decay=1024 keeps 3/4.
    # t0: u=640, v=640;  t1: u=320, v=480+320=800;  t2 (spike in): u=160+640=800, v=600+800=1400
    # vth=20 -> 1280: spike at t2, v <- 0.  t3: u=400, v=400.
    layer = one_neuron(10, 2048, 1024, 20)
    x = np.array([[[1], [0], [1], [0]]], dtype=bool)
    np.testing.assert_array_equal(layer_int(layer, x)[0, :, 0], [False, False, True, False])


def test_decay_truncates_toward_zero():
    # negative u: -640 * 4095/4096 = -639.84 -> -639 (toward zero), never crossing 0
    layer = one_neuron(-10, 1, 0, 1)
    x = np.array([[[1]] + [[0]] * 5], dtype=bool)
    assert not layer_int(layer, x).any()


def test_voltage_saturates_and_current_wraps():
    # 254 << 6 = 16256 per input per step; 600 inputs -> 9.75e6 > 2**23: u wraps negative
    layer = Layer(name="w", weight=np.full((1, 600), 254), threshold=np.ones(1),
                  i_decay=4096, v_decay=4096, vth=131071)
    x = np.ones((1, 1, 600), dtype=bool)
    assert not layer_int(layer, x).any()   # wrapped to negative: no spike
    layer = layer.with_(weight=np.full((1, 500), 254))   # 8.13e6 < 2**23: positive
    assert not layer_int(layer, np.ones((1, 1, 500), dtype=bool)).any()  # below 131071<<6
    assert layer_int(layer.with_(vth=100000), np.ones((1, 1, 500), dtype=bool)).all()


def _float_loop(layer, x):
    """emulator.layer_float's update written out in numpy, step by step (what the fused
    numba loop, lif_kernel.lif_float, replaces): spikes and the largest |u|, |v|."""
    cur = layer.synaptic_input(x)
    du, dv = 1 - layer.i_decay / 4096, 1 - layer.v_decay / 4096
    u = np.zeros(cur[:, 0].shape)
    v = np.zeros_like(u)
    out = np.zeros(cur.shape, dtype=bool)
    peaks = {"u": 0.0, "v": 0.0}
    for t in range(cur.shape[1]):
        u = du * u + cur[:, t]
        v = dv * v + u if layer.bias is None else dv * v + u + layer.bias
        peaks = {"u": max(peaks["u"], float(np.abs(u).max(initial=0))),
                 "v": max(peaks["v"], float(np.abs(v).max(initial=0)))}
        s = v > layer.neuron_thresholds()
        v[s] = 0.0
        out[:, t] = s
    return out, peaks


def test_float_layer_bitwise_equal_to_numpy_loop():
    """The float layer's fused loop does numpy's operations in numpy's order (no fused
    multiply-add): spikes equal and the recorded peaks equal to the last bit, on random
    layers with and without bias, shared and per-neuron thresholds, any decays."""
    spikes = 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        n_in, n = int(rng.integers(5, 200)), int(rng.integers(1, 120))
        layer = Layer(name="f", weight=rng.normal(0, rng.choice([0.05, 0.3, 1.0]), (n, n_in)),
                      threshold=rng.uniform(0.2, 2, n) if seed % 2 else np.full(n, rng.uniform(0.2, 2)),
                      i_decay=int(rng.integers(0, 4097)), v_decay=int(rng.integers(0, 4097)),
                      bias=rng.normal(0, 0.2, n) if seed % 3 == 0 else None)
        x = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 16)), n_in)) < rng.uniform(0.05, 0.6)
        emulator._FLOAT_RUNS.clear()
        ranges: dict = {}
        got = emulator.layer_float(layer, x, ranges=ranges)
        want, peaks = _float_loop(layer, x)
        np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
        assert ranges == peaks, seed
        spikes += int(want.sum())
    assert spikes > 10_000                      # the layers do fire


def test_float_cache_tells_layers_apart_by_shape_dtype_and_reset():
    """layer_float keeps its last results by a digest of the layer and x: the same weight
    bytes in another shape (1x2 and 2x1 kernels) or dtype are other layers, and a layer
    with another reset is refused even after the zero-reset one ran."""
    rng = np.random.default_rng(3)
    k = np.array([1.0, -1.0, 0.7, 0.2])
    x = rng.random((2, 4, 20)) < 0.6
    c1 = Layer(name="c", weight=k.reshape(2, 1, 1, 2), threshold=np.full(2, 0.3), kind="conv", in_shape=(1, 4, 5),
               i_decay=1024, v_decay=512)
    c2 = c1.with_(weight=k.reshape(2, 1, 2, 1))
    assert emulator.layer_float(c1, x).shape == (2, 4, c1.n_out)
    assert emulator.layer_float(c2, x).shape == (2, 4, c2.n_out) and c1.n_out != c2.n_out
    d1 = Layer(name="d", weight=np.arange(6, dtype=np.int64).reshape(2, 3), threshold=np.full(2, 0.5),
               i_decay=0, v_decay=0)
    d2 = d1.with_(weight=d1.weight.view(np.float64))          # the same bytes, tiny floats
    xd = np.ones((1, 3, 3), dtype=bool)
    assert emulator.layer_float(d1, xd).any() and not emulator.layer_float(d2, xd).any()
    with pytest.raises(ValueError, match="reset 'subtract'"):
        emulator.layer_float(d1.with_(reset="subtract", max_events=31), xd)
