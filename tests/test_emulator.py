"""The integer model on hand-computed cases (Lava's fixed-point LIF equations)."""
import numpy as np

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
