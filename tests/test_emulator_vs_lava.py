"""Property: the integer emulator's spikes equal Lava's fixed-point simulation's at every
layer and time step, for random small networks, inputs and integer parameters within
Loihi's ranges, including current wrap-around and voltage saturation."""
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ahsar_deploy.ir import DeployGraph, Layer
from exporters import lava


@st.composite
def networks(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    saturate = draw(st.booleans())          # many strong inputs: u wraps, v saturates
    n_in = draw(st.integers(300, 700)) if saturate else draw(st.integers(1, 40))
    sizes = [n_in] + [draw(st.integers(1, 12)) for _ in range(draw(st.integers(1, 3)))]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lo = 0 if saturate and i == 0 else -128
        w = 2 * rng.integers(lo, 128, size=(b, a))
        vth = int(draw(st.sampled_from([1, 2, 100, 1000, 131071, int(rng.integers(1, 131072))])))
        layers.append(Layer(name=f"l{i}", weight=w, threshold=np.ones(b), vth=vth,
                            i_decay=draw(st.sampled_from([1, 4096, int(rng.integers(1, 4097))])),
                            v_decay=draw(st.sampled_from([0, 4095, int(rng.integers(0, 4096))]))))
    steps = draw(st.integers(2, 10))
    samples = draw(st.integers(1, 4))
    p = 0.9 if saturate else draw(st.floats(0.05, 0.8))
    x = rng.random((samples, steps, n_in)) < p
    g = DeployGraph(layers=tuple(layers), n_inputs=n_in, steps=steps, dataset="random",
                    encoding="random", method="baseline", source_sha256="", target="loihi")
    return g, x


def _cases(tmp_path, nets):
    cases = []
    for graph, x in nets:
        build = Path(tempfile.mkdtemp(dir=tmp_path))     # examples share tmp_path; inputs may repeat
        lava.write_netx(graph, build / "model.net")
        cases.append((build, graph, x))
    return cases


# 3 examples of 4 networks: 12 networks, one Lava worker per example (start-up is most of its time)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(networks(), min_size=4, max_size=4))
def test_emulator_equals_lava(tmp_path, lava_equals_emulator_many, nets):
    lava_equals_emulator_many(_cases(tmp_path, nets))


@st.composite
def conv_networks(draw):
    """A conv layer (random kernel, stride, padding, non-square maps) then a dense readout."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    kh, kw = draw(st.integers(1, min(h, 4))), draw(st.integers(1, min(w, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    c_out = draw(st.integers(1, 4))
    conv = Layer(name="c0", weight=2 * rng.integers(-60, 128, size=(c_out, c, kh, kw)), threshold=np.ones(c_out),
                 kind="conv", in_shape=(c, h, w), stride=stride, padding=padding,
                 vth=int(draw(st.sampled_from([1, 50, 300, int(rng.integers(1, 2000))]))),
                 i_decay=draw(st.sampled_from([1, 4096, int(rng.integers(1, 4097))])),
                 v_decay=draw(st.sampled_from([0, 4095, int(rng.integers(0, 4096))])))
    dense = Layer(name="d1", weight=2 * rng.integers(-128, 128, size=(3, conv.n_out)), threshold=np.ones(3),
                  vth=int(rng.integers(1, 500)), i_decay=1024, v_decay=512)
    steps = draw(st.integers(2, 6))
    x = rng.random((draw(st.integers(1, 3)), steps, c * h * w)) < draw(st.floats(0.1, 0.8))
    g = DeployGraph(layers=(conv, dense), n_inputs=c * h * w, steps=steps, dataset="random",
                    encoding="random", method="baseline", source_sha256="", target="loihi")
    return g, x


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(conv_networks(), min_size=3, max_size=3))
def test_conv_emulator_equals_lava(tmp_path, lava_equals_emulator_many, nets):
    lava_equals_emulator_many(_cases(tmp_path, nets))
