"""Recurrent layers and biases (issue 18) through every deploy stage: the integer emulator
against hand-computed values and Lava, model.nir in norse against the float model, a
hand-written recurrent NIR graph with biases through export, and the refusals.

Lava runs go through the conftest fixtures (one Lava worker for many networks, under a
timeout), as tests/test_emulator_vs_lava.py does."""
import tempfile
from pathlib import Path

import nir
import numpy as np
import pytest

import ahsar_deploy
from ahsar_deploy import build, emulator
from ahsar_deploy.errors import DeployError, TargetError, UnsupportedLayerError
from ahsar_deploy.ir import Layer
from ahsar_deploy.passes.calibrate import calibrate
from ahsar_deploy.passes.check import check, check_size
from ahsar_deploy.passes.fidelity import fidelity
from ahsar_deploy.passes.fold import fold
from ahsar_deploy.passes.map import map_layers
from ahsar_deploy.passes.refit import refit_readout
from exporters import lava, nir_import
from exporters import nir as nir_exporter
from exporters import norse as norse_backend
from hw_targets import LOIHI
from nets import HAND_SPIKES, HAND_X, _conv_then_recurrent, _graph, _hand_layer, _random_net


def test_hand_loop_emulator_int():
    np.testing.assert_array_equal(emulator.layer_int(_hand_layer(), HAND_X), HAND_SPIKES)
    # the float model of the same integers gives the same spikes (every halving above is exact)
    np.testing.assert_array_equal(emulator.run(emulator.float_view(_graph(_hand_layer(), steps=8)), HAND_X)[0],
                                  HAND_SPIKES)


def test_recurrent_ops_counted():
    layer = _hand_layer()
    assert layer.recurrent_synaptic_ops(HAND_SPIKES) == 3 * 2      # 3 spikes x fan-out 2
    assert layer.with_(recurrent=None).recurrent_synaptic_ops(HAND_SPIKES) == 0


# ---- (d) the same loop written with the nir package, deployed by export ---------------
def _hand_nir(c_bias=(0.0, 1.0), v_leak=(0.0, 4.0), tau_syn=1e-3) -> nir.NIRGraph:
    """The hand loop in float units (threshold 5, weights as above), dt = 1 ms: tau_syn = dt
    (i_decay 4096), tau_mem = 2 dt (v_decay 2048), r = tau_mem/dt, w_in = 1, so the gain
    (dt/tau_mem) r (dt/tau_syn) w_in is 1; bias b = c + (dt/tau_mem) v_leak = [0, 3]."""
    n = 2
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([1])),
        "fc": nir.Affine(weight=np.array([[4.0], [0.0]]), bias=np.array(c_bias)),
        "lif": nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, 2e-3), r=np.full(n, 2.0),
                           v_leak=np.array(v_leak), v_threshold=np.full(n, 5.0), v_reset=np.zeros(n),
                           w_in=np.ones(n)),
        "rec": nir.Linear(weight=np.array([[0.0, -2.0], [6.0, 0.0]])),
        "output": nir.Output(output_type=np.array([n])),
    }, edges=[("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
        type_check=False)


@pytest.fixture(scope="module")
def hand_build(tmp_path_factory):
    path = tmp_path_factory.mktemp("nir") / "loop.nir"
    nir.write(str(path), _hand_nir())
    out = tmp_path_factory.mktemp("builds") / "loop"
    ahsar_deploy.export(path, "loihi", out, calib=np.repeat(HAND_X, 4, axis=0).astype(np.uint8))
    return out


def test_hand_nir_imports_as_hand_layer():
    g = nir_import.from_graph(_hand_nir(), dataset="", steps=8)
    (l,) = g.layers
    assert (l.i_decay, l.v_decay) == (4096, 2048)
    np.testing.assert_array_equal(l.recurrent, [[0, -2], [6, 0]])
    np.testing.assert_array_equal(l.bias, [0, 3])
    np.testing.assert_array_equal(emulator.run(g, HAND_X)[0], HAND_SPIKES)


def test_hand_nir_deploys(hand_build):
    graph, manifest = build.load(hand_build)
    assert manifest["layers"][0]["recurrent"] and manifest["layers"][0]["bias"]
    (l,) = graph.layers
    k = l.scale / 5   # one scale for weights, recurrent weights, bias and threshold (5 folded to 1)
    assert l.vth == round(5 * k) and l.bias[1] == round(3 * k) and l.recurrent[1, 0] == 2 * round(6 * k / 2)
    np.testing.assert_array_equal(emulator.run(graph, HAND_X)[0], HAND_SPIKES)
    # model.nir is complete: it rebuilds model.net byte for byte
    with tempfile.TemporaryDirectory() as tmp:
        nir_exporter.rebuild_netx(hand_build / "model.nir", Path(tmp) / "model.net")
        assert (Path(tmp) / "model.net").read_bytes() == (hand_build / "model.net").read_bytes()
    g2 = nir_exporter.graph_from_build_nir(hand_build / "model.nir")
    np.testing.assert_array_equal(g2.layers[0].recurrent, l.recurrent)
    np.testing.assert_array_equal(g2.layers[0].bias, l.bias)


# ---- (b) random recurrent networks with biases: Lava == emulator ----------------------
def test_random_recurrent_networks_lava_equals_emulator(tmp_path, hand_build, lava_equals_emulator_many):
    nets = [_random_net(seed) for seed in range(8)] + [_conv_then_recurrent(100)]
    cases = []
    for graph, x in nets:
        d = Path(tempfile.mkdtemp(dir=tmp_path))
        lava.write_netx(graph, d / "model.net")
        cases.append((d, graph, x))
    hand, _ = build.load(hand_build)
    cases += [(hand_build, hand, HAND_X)]          # (a) and (d) in Lava too
    got = lava_equals_emulator_many(cases)
    np.testing.assert_array_equal(got[-1][0], HAND_SPIKES)
    assert sum(int(s.sum()) for spikes in got for s in spikes) > 200


# ---- (c) model.nir of a recurrent build in norse == the float model ------------------
def test_recurrent_model_nir_in_norse_equals_float_model(tmp_path, hand_build):
    graph, _ = build.load(hand_build)
    x = np.random.default_rng(0).random((16, 8, 1)) < 0.6
    got = norse_backend.run(hand_build, graph, x)
    np.testing.assert_array_equal(got[0], emulator.run(emulator.float_view(graph), x, integer=False)[0])
    # two recurrent layers with current decay (no bias: a v_leak runs differently in norse, see nir.py)
    rng = np.random.default_rng(1)
    l0 = Layer(name="a", weight=2 * rng.integers(-60, 100, (6, 5)), threshold=np.ones(6), vth=150, i_decay=1024,
               v_decay=512, recurrent=2 * rng.integers(-128, 128, (6, 6)))
    l1 = Layer(name="b", weight=2 * rng.integers(-60, 100, (3, 6)), threshold=np.ones(3), vth=100, i_decay=4096,
               v_decay=2048, recurrent=2 * rng.integers(-128, 128, (3, 3)), bias=rng.integers(-20, 60, 3))
    g = _graph(l0, l1, steps=12)
    nir_exporter.write(g, tmp_path / "model.nir")
    x = rng.random((20, 12, 5)) < 0.4
    got = norse_backend.run_nir(tmp_path / "model.nir", x)
    want = emulator.run(emulator.float_view(g), x, integer=False)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"layer {i}")
    assert all(w.sum() > 20 for w in want)
    # a bias on a layer with current memory and a voltage leak is written as v_leak, which
    # norse's from_nir also feeds into the current: refused in one line, never run wrongly
    g = _graph(l0.with_(bias=rng.integers(1, 9, 6)), l1, steps=12)
    nir_exporter.write(g, tmp_path / "leak.nir")
    from ahsar_deploy.errors import BackendError
    with pytest.raises(BackendError, match=r"layer 'a' .*v_leak.*--backend emulator or lava") as e:
        norse_backend.run_nir(tmp_path / "leak.nir", x)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("i_decay,v_decay", [(1024, 512), (4096, 1024), (1024, 2048), (4096, 0), (1024, 0)])
def test_model_nir_round_trip_exact(i_decay, v_decay):
    """model.nir read back by our importer gives the float model's spikes, for every form a
    recurrent layer and a bias take in NIR (Affine bias, v_leak, IF, LI -> IF)."""
    rng = np.random.default_rng(i_decay + v_decay)
    bias = None if (i_decay, v_decay) == (1024, 0) else rng.integers(-20, 60, 5)
    l0 = Layer(name="l0", weight=2 * rng.integers(-60, 100, (5, 6)), threshold=np.ones(5), vth=150,
               i_decay=i_decay, v_decay=v_decay, recurrent=2 * rng.integers(-128, 128, (5, 5)), bias=bias)
    g = _graph(l0, steps=12)
    back = nir_import.from_graph(nir_exporter.to_nir(g), dataset="", steps=12, dt_s=nir_exporter.DT_S)
    x = rng.random((20, 12, 6)) < 0.4
    np.testing.assert_array_equal(emulator.run(back, x)[0], emulator.run(emulator.float_view(g), x)[0])


# ---- the passes -----------------------------------------------------------------------
def _float_rnn(seed=0):
    rng = np.random.default_rng(seed)
    l0 = Layer(name="h", weight=rng.normal(0, 0.6, (12, 8)), threshold=rng.uniform(0.5, 2, 12), i_decay=1024,
               v_decay=512, recurrent=rng.normal(0, 0.3, (12, 12)), bias=rng.normal(0, 0.05, 12))
    l1 = Layer(name="out", weight=rng.normal(0, 0.5, (3, 12)), threshold=np.full(3, 1.5), i_decay=1024, v_decay=512,
               bias=rng.normal(0, 0.05, 3))
    return _graph(l0, l1, steps=10, target=None), rng.random((64, 10, 8)) < 0.3


def test_fold_scales_recurrent_and_bias_with_threshold():
    g, x = _float_rnn()
    f = fold(g)
    assert np.all(f.layers[0].threshold == 1)
    th = g.layers[0].threshold
    np.testing.assert_allclose(f.layers[0].recurrent, g.layers[0].recurrent / th[:, None])
    np.testing.assert_allclose(f.layers[0].bias, g.layers[0].bias / th)
    for a, b in zip(emulator.run(g, x), emulator.run(f, x)):
        assert np.mean(a == b) > 0.999          # exact up to float rounding at ties


def test_calibrate_check_fidelity_recurrent():
    g, x = _float_rnn()
    q, reports = calibrate(fold(g), x, LOIHI)
    l = q.layers[0]
    assert l.recurrent.dtype.kind == "i" and np.all(l.recurrent % 2 == 0) and np.abs(l.recurrent).max() <= 256
    assert l.bias.dtype.kind == "i" and np.abs(l.bias).max() <= LOIHI.bias_max
    np.testing.assert_array_equal(l.bias, np.round(fold(g).layers[0].bias * l.scale))
    checked = check(q, LOIHI)
    assert checked.notes["cores"] == 2
    fid = fidelity(fold(g), q, x, LOIHI)
    assert fid["free_running"]["layers"][0]["spike_agreement"] > 0.9
    with pytest.raises(TargetError, match="bias range"):
        check(q.with_(layers=(l.with_(bias=l.bias * 0 + 5000), q.layers[1])), LOIHI)


def test_map_counts_recurrent_fan_in():
    w = np.zeros((200, 4000))
    plain = Layer(name="big", weight=w, threshold=np.ones(200), i_decay=1024, v_decay=512)
    map_layers(_graph(plain, steps=1), LOIHI)                  # 4000 inputs fit 4096 axons
    with pytest.raises(TargetError, match=r"big does not fit loihi: fan-in 4200 inputs"):
        map_layers(_graph(plain.with_(recurrent=np.zeros((200, 200))), steps=1), LOIHI)


def test_refit_skips_recurrent_readout():
    g, x = _float_rnn()
    g = g.with_(layers=(g.layers[0], g.layers[1].with_(recurrent=np.zeros((3, 3)))))
    with pytest.raises(ValueError, match="recurrent readout"):
        refit_readout(fold(g), calibrate(fold(g), x, LOIHI)[0], x)


# ---- (e) what does not map: one line each, naming what and how to fix -----------------
def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_ir_refuses_bad_shapes():
    w = np.ones((3, 4))
    with pytest.raises(UnsupportedLayerError) as e:
        Layer(name="x", weight=w, threshold=np.ones(3), i_decay=1, v_decay=0, recurrent=np.ones((3, 4)))
    assert "x: recurrent weights (3, 4)" in _one_line(e)
    with pytest.raises(UnsupportedLayerError) as e:
        Layer(name="x", weight=w, threshold=np.ones(3), i_decay=1, v_decay=0, bias=np.ones(4))
    assert "x: bias of shape (4,), expected (3,)" in _one_line(e)


def test_conv_bias_refused():
    conv = Layer(name="c", weight=np.ones((2, 1, 3, 3)), threshold=np.ones(2), kind="conv", in_shape=(1, 4, 4),
                 i_decay=1024, v_decay=512, bias=np.ones(8))
    with pytest.raises(TargetError) as e:
        check_size(_graph(conv, steps=2), LOIHI)
    assert "c: a bias on a conv layer is not deployed" in _one_line(e)


def test_nir_export_refuses_bias_without_exact_form():
    l = Layer(name="noleak", weight=np.ones((2, 2)), threshold=np.ones(2), i_decay=1024, v_decay=0, bias=np.ones(2))
    with pytest.raises(UnsupportedLayerError) as e:
        nir_exporter.to_nir(_graph(l, steps=2))
    assert "noleak has a bias" in _one_line(e) and "v_decay > 0" in _one_line(e)


def _refused(graph: nir.NIRGraph, *needles: str) -> None:
    with pytest.raises(DeployError) as e:
        nir_import.from_graph(graph, dataset="", steps=4, dt_s=1e-3)
    msg = _one_line(e)
    for n in needles:
        assert n in msg, msg


def test_nir_import_refusals():
    # an Affine bias into a current with memory (tau_syn > dt) is not Loihi's v-bias
    _refused(_hand_nir(tau_syn=4e-3), "node 'fc' (Affine)", "synaptic current with memory", "v_leak")
    # the same bias as v_leak deploys
    g = nir_import.from_graph(_hand_nir(c_bias=(0, 0), v_leak=(0, 6), tau_syn=4e-3), dataset="", steps=4, dt_s=1e-3)
    np.testing.assert_allclose(g.layers[0].bias, [0, 3])
    # two loops on one neuron
    two = _hand_nir()
    two.nodes["rec2"] = nir.Linear(weight=np.eye(2))
    two.edges += [("lif", "rec2"), ("rec2", "lif")]
    _refused(two, "node 'lif' has two recurrent loops", "one matrix")
    # a loop spanning two layers
    n = 2
    lif = lambda: nir.CubaLIF(tau_syn=np.full(n, 1e-3), tau_mem=np.full(n, 2e-3), r=np.full(n, 2.0),  # noqa: E731
                              v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.ones(n))
    cyc = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([1])), "fc": nir.Linear(weight=np.ones((2, 1))),
                              "lif": lif(), "fc2": nir.Linear(weight=np.eye(2)), "lif2": lif(),
                              "back": nir.Linear(weight=np.eye(2)), "output": nir.Output(output_type=np.array([2]))},
                       edges=[("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "lif2"), ("lif2", "back"),
                              ("back", "lif"), ("lif2", "output")], type_check=False)
    _refused(cyc, "node 'lif' has 2 inputs", "one Affine/Linear loop")
    # a loop on a convolution
    conv = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([1, 3, 3])),
        "cv": nir.Conv2d(input_shape=(3, 3), weight=np.ones((1, 1, 3, 3)), stride=1, padding=0, dilation=1,
                         groups=1, bias=np.zeros(1)),
        "lif": nir.CubaLIF(tau_syn=np.full((1, 1, 1), 1e-3), tau_mem=np.full((1, 1, 1), 2e-3),
                           r=np.full((1, 1, 1), 2.0), v_leak=np.zeros((1, 1, 1)), v_threshold=np.ones((1, 1, 1)),
                           v_reset=np.zeros((1, 1, 1)), w_in=np.ones((1, 1, 1))),
        "rec": nir.Linear(weight=np.ones((1, 1))), "output": nir.Output(output_type=np.array([1, 1, 1]))},
        edges=[("input", "cv"), ("cv", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")], type_check=False)
    _refused(conv, "node 'rec' (Linear)", "conv layer", "dense")
    # v_leak of an LI (the synaptic current of an IF) is filtered: refused
    li = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([1])), "fc": nir.Linear(weight=np.ones((2, 1))),
        "cur": nir.LI(tau=np.full(2, 4e-3), r=np.full(2, 4.0), v_leak=np.ones(2)),
        "if": nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
        "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "fc"), ("fc", "cur"), ("cur", "if"), ("if", "output")], type_check=False)
    _refused(li, "node 'cur' (LI)", "v_leak", "LIF v_leak")


def test_inhibitory_only_matrix_that_lava_clips_is_refused():
    """Lava's Dense holds an all-negative matrix down to -255 after netx's shift (-256 would
    become -255 and be truncated, measured against lava's own functions on random
    matrices); check refuses it and calibrate never makes it."""
    w = np.array([[100, -20], [4, 8]])
    l = Layer(name="inh", weight=w, threshold=np.ones(2), vth=10, i_decay=4096, v_decay=0,
              recurrent=np.array([[-256, 0], [-2, -4]]))
    with pytest.raises(TargetError) as e:
        check(_graph(l, steps=2), LOIHI)
    assert "inh breaks loihi rule 'inhibitory weights'" in _one_line(e)
    check(_graph(l.with_(recurrent=np.array([[-254, 0], [-2, -4]])), steps=2), LOIHI)
    # -128 in a mixed layer whose largest weight is below 127 is shifted to -256 by netx
    assert not LOIHI.netx_inhibitory_ok(np.array([[100, -128]]), np.array([[-128]]))
    f = Layer(name="f", weight=np.array([[1.0, -0.5]]), threshold=np.ones(1), i_decay=4096, v_decay=0,
              recurrent=np.array([[-3.0]]))
    q, _ = calibrate(_graph(f, steps=2, target=None), np.ones((1, 2, 2), dtype=bool), LOIHI)
    assert q.layers[0].recurrent.min() >= -254


def test_qat_trains_recurrent_weights_and_bias():
    from ahsar_deploy.passes.qat import finetune
    g, x = _float_rnn()
    f = fold(g)
    q, _ = calibrate(f, x, LOIHI)
    t = finetune(f, q, x, np.random.default_rng(0).integers(0, 3, len(x)), LOIHI, epochs=1)
    assert not np.array_equal(t.layers[0].recurrent, f.layers[0].recurrent)
    assert not np.array_equal(t.layers[0].bias, f.layers[0].bias)
    assert t.layers[1].recurrent is None
