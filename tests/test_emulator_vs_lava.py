"""Property: the integer emulator's spikes equal Lava's fixed-point simulation's at every
layer and time step, for random small networks, inputs and integer parameters within
Loihi's ranges, including current wrap-around and voltage saturation."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ahsar_deploy import emulator
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


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(networks())
def test_emulator_equals_lava(tmp_path, net):
    graph, x = net
    build = tmp_path / f"b{abs(hash(x.tobytes()))}"
    build.mkdir()
    lava.write_netx(graph, build / "model.net")
    got = lava.run(build, x, graph.steps, timeout_s=300, progress=False)
    want = emulator.run(graph, x)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"layer {i}")
