"""The torch emulator (ahsar_deploy/torch_emulator.py) against the numpy emulator, spike for
spike: random dense networks (wrap-around and saturation included), conv networks,
recurrent networks with biases, negative weight exponents, graded inputs, blocks that
split the samples, and the refusals. On the CPU (no other torch device here), with the
neuron update both in lif_kernel's fused loop and in torch's ops."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ahsar_deploy import emulator, torch_emulator
from ahsar_deploy.errors import BackendError
from ahsar_deploy.ir import Layer
from nets import HAND_SPIKES, HAND_X, _conv_then_recurrent, _graph, _hand_layer, _random_net, conv_networks, networks


@pytest.fixture(autouse=True, params=["fused", "torch"])
def neuron_update(request, monkeypatch):
    """Every test runs twice on the CPU: the neuron update in lif_kernel's fused numba loop
    (the CPU default) and in torch's ops (what other devices run)."""
    monkeypatch.setattr(torch_emulator, "FUSED", request.param == "fused")
    return request.param


def _same(graph, x, **kw):
    want = emulator.run(graph, x, integer=True, device=None)   # the numpy reference
    got = torch_emulator.run(graph, x, **kw)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == bool and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    return got


@settings(max_examples=40, deadline=None, derandomize=True)
@given(networks(), st.integers(1, 5))
def test_random_dense_networks(net, block):
    graph, x = net
    _same(graph, x, block=block)
    h = x
    for layer in graph.layers:    # one layer at a time, with the wrap and saturation counts
        want_ev, got_ev = {}, {}
        want = emulator.layer_int(layer, h, events=want_ev)
        np.testing.assert_array_equal(torch_emulator.layer_int(layer, h, events=got_ev), want)
        assert got_ev == want_ev
        h = want


@settings(max_examples=25, deadline=None, derandomize=True)
@given(conv_networks())
def test_random_conv_networks(net):
    _same(*net)


def test_random_recurrent_networks_with_bias():
    total = {"u_wrap": 0, "v_saturate": 0}
    for seed in range(12):
        graph, x = _random_net(seed)
        _same(graph, x, block=2)
        want_ev, got_ev = {}, {}
        want = emulator.layer_int(graph.layers[0], x, events=want_ev)
        np.testing.assert_array_equal(torch_emulator.layer_int(graph.layers[0], x, events=got_ev), want)
        assert got_ev == want_ev, seed
        total = {k: total[k] + got_ev[k] for k in total}
    assert total["u_wrap"] > 0                  # the strong networks wrap


def test_wrap_and_saturation_counts():
    """600 inputs at weight 254, all spiking: 600 * 254 << 6 = 9,753,600 > 2**23 every step,
    so u wraps at once; a small leak lets v climb to the clip; counts equal numpy's."""
    layer = Layer(name="hot", weight=np.full((3, 600), 254), threshold=np.ones(3), vth=131071,
                  i_decay=4096, v_decay=1)
    x = np.ones((2, 12, 600), dtype=bool)
    x[1, ::2] = False
    want_ev, got_ev = {}, {}
    want = emulator.layer_int(layer, x, events=want_ev)
    np.testing.assert_array_equal(torch_emulator.layer_int(layer, x, events=got_ev), want)
    assert got_ev == want_ev and got_ev["u_wrap"] > 0 and got_ev["v_saturate"] > 0


def test_conv_then_recurrent_and_hand_loop():
    _same(*_conv_then_recurrent(100))
    got = _same(_graph(_hand_layer(), steps=8), HAND_X)
    np.testing.assert_array_equal(got[0], HAND_SPIKES)


def test_paths_wide_weights_negative_exponent_graded_input():
    """The int8 path with both halves (|w| > 127), one half (|w| <= 127), even weights
    divided by their common power of two, float paths for graded inputs and weights wider
    than int8's split, and negative and positive weight exponents."""
    rng = np.random.default_rng(7)
    x = rng.random((9, 6, 50)) < 0.3
    for w_max, exp, step in ((256, 0, 1), (127, 0, 1), (256, -3, 1), (128, -3, 2), (64, 2, 4), (40000, 0, 1)):
        w = step * rng.integers(-w_max // step, w_max // step + 1, size=(20, 50))   # step 2, 4: one int8 product
        l0 = Layer(name="l0", weight=w, threshold=np.ones(20),
                   vth=int(rng.integers(50, 400)) * max(1, w_max // 256), i_decay=1024, v_decay=512, weight_exp=exp)
        l1 = Layer(name="l1", weight=2 * rng.integers(-128, 128, size=(5, 20)), threshold=np.ones(5), vth=60,
                   i_decay=4096, v_decay=0)
        got = _same(_graph(l0, l1, steps=6), x, block=4)
        assert got[0].any() and not got[0].all()
    graded = rng.integers(0, 4, size=(3, 6, 50))          # not spikes: float64 path, exact
    _same(_graph(l0, l1, steps=6), graded)


def test_refusals():
    float_layer = Layer(name="f", weight=np.ones((2, 3)), threshold=np.ones(2), i_decay=1, v_decay=1)
    with pytest.raises(ValueError, match="quantized"):
        torch_emulator.run(_graph(float_layer, steps=2), np.zeros((1, 2, 3), dtype=bool))
    xylo = Layer(name="x", weight=np.ones((2, 3)), threshold=np.ones(2), vth=1, i_decay=1, v_decay=1,
                 reset="subtract", max_events=31)
    with pytest.raises(ValueError, match="reset"):
        torch_emulator.run(_graph(xylo, steps=2), np.zeros((1, 2, 3), dtype=bool))
    q = Layer(name="q", weight=np.ones((2, 3)), threshold=np.ones(2), vth=1, i_decay=1, v_decay=1)
    with pytest.raises(BackendError, match="--device nonsense: torch cannot use it here"):
        torch_emulator.run(_graph(q, steps=2), np.zeros((1, 2, 3), dtype=bool), device="nonsense")


def test_cli_device(small_build, cli_inproc, tmp_path):
    """`ahsar run --device cpu` gives the same predictions as the default; a device torch
    cannot use, or --device with another backend, is one error line and exit 1."""
    import json
    import shutil
    small_build = shutil.copytree(small_build, tmp_path / "b")     # runs add spike caches: a copy
    code, out, _ = cli_inproc("run", small_build, "--backend", "emulator", "--samples", "40", "--json")
    assert code == 0
    code2, out2, _ = cli_inproc("run", small_build, "--backend", "emulator", "--samples", "40", "--json",
                                "--device", "cpu")
    assert code2 == 0 and json.loads(out2)["predictions"] == json.loads(out)["predictions"]
    code, _, err = cli_inproc("run", small_build, "--backend", "emulator", "--samples", "4", "--device", "tpu9")
    assert code == 1 and "--device tpu9: torch cannot use it here" in err and "use --device cpu" in err
    code, _, err = cli_inproc("energy", small_build, "--backend", "lava", "--samples", "4", "--device", "cuda")
    assert code == 1 and "only --backend emulator runs on a torch device" in err
    # refused even when every sample is cached already (nothing left to run), and a meta device
    for device in ("tpu9", "meta"):
        code, _, err = cli_inproc("energy", small_build, "--samples", "4", "--device", device)
        assert code == 1 and f"--device {device}: torch cannot use it here" in err, err


def test_refuses_what_it_cannot_compute_exactly():
    """A conv layer with a weight exponent (Lava's conv ignores it: numpy's emulator refuses
    it too), exponents and thresholds beyond int64's exact shifts, and blocks that are not
    positive integers: one ValueError each, never spikes from unset memory."""
    dense = Layer(name="d", weight=np.full((5, 10), 254), threshold=np.ones(5), vth=1, i_decay=4096, v_decay=4096)
    x = np.ones((3, 4, 10), dtype=bool)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="block"):
            torch_emulator.run(_graph(dense, steps=4), x, block=bad)
    for layer, why in ((dense.with_(weight_exp=-64), "weight_exp -64"), (dense.with_(weight_exp=40), "weight_exp 40"),
                       (dense.with_(vth=2 ** 57), "vth")):
        with pytest.raises(ValueError, match=why):
            torch_emulator.run(_graph(layer, steps=4), x)
    conv = Layer(name="c", weight=np.full((2, 1, 1, 2), 2), threshold=np.ones(2), vth=1, i_decay=1024, v_decay=512,
                 kind="conv", in_shape=(1, 4, 5), weight_exp=1)
    for run in (lambda g, s: emulator.run(g, s, integer=True, device=None), torch_emulator.run):
        with pytest.raises(ValueError, match="conv ignores weight_exp"):
            run(_graph(conv, steps=4), np.ones((2, 4, 20), dtype=bool))
    np.testing.assert_array_equal(torch_emulator.run(_graph(dense, steps=4), x, block=1)[0],
                                  emulator.run(_graph(dense, steps=4), x, integer=True, device=None)[0])


def test_empty_runs_agree_with_numpy():
    """No samples, no time steps, a layer without neurons: empty spikes of the right shape
    from both emulators (float and integer), with a recurrent, biased layer in the graph."""
    rng = np.random.default_rng(0)
    l0 = Layer(name="a", weight=2 * rng.integers(-128, 128, (6, 10)), threshold=np.ones(6), vth=50,
               i_decay=1024, v_decay=512)
    l1 = Layer(name="b", weight=2 * rng.integers(-128, 128, (3, 6)), threshold=np.ones(3), vth=20, i_decay=1024,
               v_decay=512, recurrent=2 * rng.integers(-20, 20, (3, 3)), bias=rng.integers(-5, 5, 3))
    for shape in ((0, 4, 10), (3, 0, 10)):
        x = rng.random(shape) < 0.5
        graph = _graph(l0, l1, steps=shape[1])
        got = _same(graph, x)
        assert [g.shape for g in got] == [shape[:2] + (6,), shape[:2] + (3,)]
        assert [f.shape for f in emulator.run(emulator.float_view(graph), x, integer=False)] == [g.shape for g in got]
    none = Layer(name="z", weight=np.zeros((0, 10)), threshold=np.ones(0), vth=5, i_decay=1, v_decay=1)
    assert _same(_graph(none, steps=3), rng.random((2, 3, 10)) < 0.5)[0].shape == (2, 3, 0)
