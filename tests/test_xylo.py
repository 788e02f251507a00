"""Xylo Audio 2 backend (exporters/xylo.py): the numpy emulator equals rockpool's XyloSim
event for event, to_xylo's quantization by hand, and one-line refusals of every limit."""
import shutil

import numpy as np
import pytest

pytest.importorskip("rockpool")
pytest.importorskip("xylosim")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ahsar_deploy.errors import DeployError, ModelFileError, TargetError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer
from exporters import xylo
from hw_targets.xylo import XYLO_AUDIO2, nearest_dash

T = XYLO_AUDIO2


def dense(name, w, th=1.0, i_decay=1024, v_decay=1024, **kw):
    w = np.asarray(w, dtype=np.float64)
    return Layer(name=name, weight=w, threshold=np.full(w.shape[0], float(th)),
                 i_decay=i_decay, v_decay=v_decay, **kw)


def graph(*layers, n_in=None):
    return DeployGraph(layers=tuple(layers), n_inputs=n_in or layers[0].n_in, steps=8,
                       dataset="test", encoding="rate", method="test", source_sha256="0")


# ------------------------------------------------------------------ emulator == XyloSim
@st.composite
def networks(draw):
    """A random integer network within Xylo Audio 2's limits, and input events."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    I, H, O = draw(st.integers(1, 16)), draw(st.integers(1, 40)), draw(st.integers(1, 8))

    def w(shape, density):
        return (rng.integers(-128, 128, shape) * (rng.random(shape) < density)).astype(np.int8)

    w_rec = w((H, H, 2), draw(st.sampled_from([0.0, 0.1, 0.5])))
    w_rec[np.cumsum(w_rec != 0, axis=1) > T.max_fanout] = 0          # fan-out <= 64
    log_th = draw(st.floats(0, 15))                                    # thresholds 1 .. 32767
    spec = dict(
        weights_in=w((I, H, 2), draw(st.sampled_from([0.3, 1.0]))), weights_rec=w_rec,
        weights_out=w((H, O), draw(st.sampled_from([0.3, 1.0]))),
        dash_mem=rng.integers(0, 16, H).astype(np.uint8), dash_syn=rng.integers(1, 16, H).astype(np.uint8),
        dash_syn_2=rng.integers(1, 16, H).astype(np.uint8),
        dash_mem_out=rng.integers(0, 16, O).astype(np.uint8),
        dash_syn_out=rng.integers(1, 16, O).astype(np.uint8),
        threshold=np.clip(rng.integers(1, 2 ** log_th + 2, H), 1, 2 ** 15 - 1).astype(np.int16),
        threshold_out=np.clip(rng.integers(1, 2 ** log_th + 2, O), 1, 2 ** 15 - 1).astype(np.int16),
        bias=(rng.integers(-3000, 3000, H) * draw(st.booleans())).astype(np.int16),
        bias_out=(rng.integers(-3000, 3000, O) * draw(st.booleans())).astype(np.int16),
        weight_shift_in=np.int8(draw(st.integers(0, 7))), weight_shift_rec=np.int8(draw(st.integers(0, 7))),
        weight_shift_out=np.int8(draw(st.integers(0, 7))))
    rate = draw(st.sampled_from([0.02, 0.2, 0.6]))
    max_count = draw(st.sampled_from([1, 3, 20]))        # counts over 15 are capped, as on the chip
    x = rng.integers(1, max_count + 1, (3, 30, I)) * (rng.random((3, 30, I)) < rate)
    return spec, x


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(networks())
def test_emulator_equals_xylosim(net):
    spec, x = net
    xylo.check_spec(spec)
    hid_sim, out_sim = xylo.run_xylosim(spec, x, counts=True)
    hid_emu, out_emu = xylo.run_emulator(spec, x, counts=True)
    np.testing.assert_array_equal(hid_emu, hid_sim)
    np.testing.assert_array_equal(out_emu, out_sim)


def test_emulator_equals_xylosim_under_saturation():
    """Large shifted weights and many events: i_syn and v_mem saturate at int16, and the
    saturating adds must happen in XyloSim's order."""
    rng = np.random.default_rng(7)
    I, H, O = 16, 24, 8
    spec = dict(
        weights_in=rng.integers(-128, 128, (I, H, 2)).astype(np.int8),
        weights_rec=rng.integers(-128, 128, (H, H, 2)).astype(np.int8),
        weights_out=rng.integers(-128, 128, (H, O)).astype(np.int8),
        dash_mem=np.full(H, 0, np.uint8), dash_syn=np.full(H, 15, np.uint8),
        dash_syn_2=np.full(H, 1, np.uint8), dash_mem_out=np.full(O, 0, np.uint8),
        dash_syn_out=np.full(O, 15, np.uint8), threshold=np.full(H, 30000, np.int16),
        threshold_out=np.full(O, 100, np.int16), bias=np.full(H, -2000, np.int16),
        bias_out=np.full(O, 32767, np.int16), weight_shift_in=np.int8(7),
        weight_shift_rec=np.int8(7), weight_shift_out=np.int8(7))
    x = rng.integers(0, 16, (2, 40, I))
    sim = xylo.run_xylosim(spec, x, counts=True)
    events = {}
    emu = xylo.run_emulator(spec, x, counts=True, events=events)
    assert sim[0].any() and sim[1].any()
    assert events["i_syn_saturated"] > 0 and events["v_mem_saturated"] > 0
    for a, b in zip(emu, sim):
        np.testing.assert_array_equal(a, b)


@st.composite
def float_graphs(draw):
    """A random float folded graph that fits Xylo: 1 layer, or 2 with a recurrent hidden layer."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n_in, H, O = draw(st.integers(1, 16)), draw(st.integers(1, 40)), draw(st.integers(1, 8))
    decay = lambda: int(draw(st.sampled_from([0, 64, 410, 1024, 2048, 3500, 4096])))
    out = dense("o", rng.normal(0, 1, (O, H)), i_decay=decay(), v_decay=decay(),
                bias=rng.normal(0, 0.1, O) if draw(st.booleans()) else None)
    if draw(st.booleans()):
        return graph(out.with_(weight=rng.normal(0, 1, (O, n_in)), name="only"))
    hid = dense("h", rng.normal(0, 1, (H, n_in)), i_decay=decay(), v_decay=decay(),
                recurrent=rng.normal(0, 0.3, (H, H)) if draw(st.booleans()) else None,
                bias=rng.normal(0, 0.1, H) if draw(st.booleans()) else None)
    return graph(hid, out)


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(float_graphs())
def test_to_xylo_builds_run_equal(g):
    """Every spec to_xylo builds is valid, and emulator == XyloSim on it; a 1-layer build's
    hidden neurons relay the inputs exactly."""
    spec = xylo.to_xylo(g)
    x = np.random.default_rng(0).random((3, 20, g.n_inputs)) < 0.3
    hid, out = xylo.run_xylosim(spec, x, counts=True)
    emu = xylo.run_emulator(spec, x, counts=True)
    np.testing.assert_array_equal(emu[0], hid)
    np.testing.assert_array_equal(emu[1], out)
    if len(g.layers) == 1:
        np.testing.assert_array_equal(hid, x)


# ------------------------------------------------------------------ to_xylo by hand
def test_to_xylo_two_layers_by_hand():
    """keep 0.5 -> dash 1 (chip keeps 0.5), keep 0.75 -> dash 2 (exact); weights / 0.5 and
    / 0.75 for the synaptic decay; k = 2048 / threshold; the smallest shift holding the
    largest weight; threshold floor(k th) + 1."""
    l0 = dense("h", [[0.5, -0.25], [1.0, 0.0]], th=1.0, i_decay=2048, v_decay=1024,
               recurrent=np.array([[0.0, -0.5], [0.25, 0.0]]))
    l1 = dense("o", [[0.75, -0.375]], th=0.5, i_decay=1024, v_decay=4096, bias=np.array([0.25]))
    report = {}
    spec = xylo.to_xylo(graph(l0, l1), report=report)
    # hidden: w / 0.5 = [[1, -.5], [2, 0]], k = 2048 -> [[2048, -1024], [4096, 0]], shift 6
    assert spec["weight_shift_in"] == 6
    np.testing.assert_array_equal(spec["weights_in"][:, :, 0], [[32, 64], [-16, 0]])   # (in, hidden)
    assert not spec["weights_in"][:, :, 1].any()
    # recurrent (post, pre) / 0.5 * 2048 = [[0, -2048], [1024, 0]] -> shift 5 -> (pre, post)
    assert spec["weight_shift_rec"] == 5
    np.testing.assert_array_equal(spec["weights_rec"][:, :, 0], [[0, 32], [-64, 0]])
    np.testing.assert_array_equal(spec["threshold"], [2049, 2049])
    np.testing.assert_array_equal(spec["dash_syn"], [1, 1])
    np.testing.assert_array_equal(spec["dash_mem"], [2, 2])
    # output: w / 0.75 = [[1, -.5]], k = 2048 / 0.5 = 4096 -> [[4096, -2048]], shift 6
    assert spec["weight_shift_out"] == 6
    np.testing.assert_array_equal(spec["weights_out"], [[64], [-32]])
    np.testing.assert_array_equal(spec["threshold_out"], [2049])
    np.testing.assert_array_equal(spec["bias_out"], [1024])
    np.testing.assert_array_equal(spec["dash_syn_out"], [2])
    np.testing.assert_array_equal(spec["dash_mem_out"], [0])
    h, o = report["layers"]
    assert (h["dash_syn"], h["keep_syn"], h["keep_syn_chip"]) == (1, 0.5, 0.5)
    assert (h["dash_mem"], h["keep_mem_chip"], h["scale"]) == (2, 0.75, 2048.0)
    assert (o["dash_mem"], o["keep_mem"], o["keep_mem_chip"], o["scale"]) == (0, 0.0, 0.0, 4096.0)
    assert report["mapping"] == {"h": "hidden", "o": "output"}
    assert any("subtraction" in d for d in report["differences"])


def test_decay_rounding_recorded():
    """keep 0.9 (tau 9.49 steps, log2 3.25) -> dash 3, whose chip keep is 0.875."""
    assert nearest_dash(0.9, 1) == 3
    report = {}
    xylo.to_xylo(graph(dense("o", [[1.0, 0.5]], i_decay=410, v_decay=410)), report=report)
    rec = report["layers"][0]
    assert rec["dash_syn"] == rec["dash_mem"] == 3
    assert rec["keep_syn_chip"] == 0.875 and abs(rec["keep_syn"] - (1 - 410 / 4096)) < 1e-12
    assert abs(rec["tau_syn_steps"] - 9.49) < 0.01 and rec["tau_syn_chip_steps"] < rec["tau_syn_steps"]


def test_one_layer_relay_is_exact():
    """A 1-layer graph: hidden neurons relay the inputs event for event, the layer sits on
    the output neurons."""
    rng = np.random.default_rng(3)
    g = graph(dense("o", rng.normal(0, 1, (4, 10)), th=1.0, i_decay=1024, v_decay=512))
    spec = xylo.to_xylo(g)
    x = rng.random((5, 50, 10)) < 0.4
    hid, out = xylo.run_xylosim(spec, x)
    np.testing.assert_array_equal(hid, x)
    np.testing.assert_array_equal(xylo.run_emulator(spec, x)[1], out)
    (last,) = xylo.run(g, spec, x)
    np.testing.assert_array_equal(last[:, :-1], out[:, 1:])   # output at t+1 answers input at t
    assert last.shape == (5, 50, 4)


def test_two_layer_run_aligns_and_matches_emulator():
    rng = np.random.default_rng(4)
    l0 = dense("h", rng.normal(0, 0.6, (20, 12)), recurrent=rng.normal(0, 0.2, (20, 20)),
               bias=rng.normal(0, 0.05, 20))
    l1 = dense("o", rng.normal(0, 0.6, (5, 20)))
    g = graph(l0, l1)
    spec = xylo.to_xylo(g)
    x = rng.random((4, 25, 12)) < 0.3
    sim = xylo.run(g, spec, x, "xylosim")
    emu = xylo.run(g, spec, x, "emulator")
    assert [s.shape for s in sim] == [(4, 25, 20), (4, 25, 5)]
    for a, b in zip(sim, emu):
        np.testing.assert_array_equal(a, b)


def test_spec_npz_round_trip_and_no_pickle(tmp_path):
    spec = xylo.to_xylo(graph(dense("o", [[1.0, -0.5]])))
    xylo.save_spec(spec, tmp_path / "s.npz")
    back = xylo.load_spec(tmp_path / "s.npz")
    assert set(back) == set(xylo.SPEC_KEYS)
    for k in xylo.SPEC_KEYS:
        np.testing.assert_array_equal(back[k], spec[k])
        assert back[k].dtype == np.asarray(spec[k]).dtype
    np.savez(tmp_path / "evil.npz", weights_in=np.array([object()], dtype=object))
    with pytest.raises(ModelFileError):
        xylo.load_spec(tmp_path / "evil.npz")


def test_cycles_model_runs():
    spec = xylo.to_xylo(graph(dense("h", np.ones((30, 16))), dense("o", np.ones((8, 30)))))
    worst = T.cycles_per_step(spec)
    quiet = T.cycles_per_step(spec, 0.01, 0.01, 0.01)
    assert worst > quiet > 0


# ------------------------------------------------------------------ refusals
def _refused(g, *words, cls=TargetError):
    with pytest.raises(cls) as e:
        xylo.to_xylo(g)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert isinstance(e.value, DeployError)


def test_refuses_three_layers():
    _refused(graph(dense("a", np.ones((4, 4))), dense("b", np.ones((4, 4))), dense("c", np.ones((2, 4)))),
             "3 layers", "at most 2")


def test_refuses_conv():
    conv = Layer(name="c", weight=np.ones((2, 1, 3, 3)), threshold=np.ones(2), i_decay=1024,
                 v_decay=1024, kind="conv", in_shape=(1, 4, 4))
    _refused(graph(conv, n_in=16), "c", "conv", "dense", cls=UnsupportedLayerError)


def test_refuses_too_many_inputs():
    _refused(graph(dense("h", np.ones((4, 17))), dense("o", np.ones((2, 4)))), "17 input", "16")


def test_refuses_too_many_hidden():
    _refused(graph(dense("h", np.ones((1001, 4))), dense("o", np.ones((2, 1001)))), "h", "1001", "1000")


def test_refuses_too_many_outputs():
    _refused(graph(dense("h", np.ones((20, 4))), dense("o", np.ones((9, 20)))), "o", "9", "8 output")
    _refused(graph(dense("o", np.ones((9, 4)))), "o", "9", "8 output")


def test_refuses_recurrent_output_layer():
    _refused(graph(dense("h", np.ones((5, 4))), dense("o", np.ones((2, 5)), recurrent=np.ones((2, 2)))),
             "o", "cannot be recurrent", "drop")
    _refused(graph(dense("o", np.ones((2, 4)), recurrent=np.ones((2, 2)))),
             "o", "cannot be recurrent", "readout layer")


def test_refuses_fanout():
    rec = np.ones((100, 100))
    _refused(graph(dense("h", np.ones((100, 4)), recurrent=rec), dense("o", np.ones((2, 100)))),
             "h", "fan-out", "64", "prune")


def test_refuses_average_fanout_memory():
    spec = xylo.to_xylo(graph(dense("h", np.ones((600, 4))), dense("o", np.ones((2, 600)))))
    w_rec = np.zeros((600, 600, 2), np.int8)
    for i in range(600):
        w_rec[i, (i + np.arange(60)) % 600, 0] = 1             # 60 per neuron, 36000 in all
    with pytest.raises(TargetError, match="average fan-out"):
        xylo.check_spec({**spec, "weights_rec": w_rec})


def test_refuses_quantized_and_bad_threshold():
    _refused(graph(dense("o", np.ones((2, 4)), vth=10)), "o", "already quantized", "before calibrate")
    _refused(graph(dense("o", np.ones((2, 4)), th=0.0)), "o", "threshold <= 0")


def test_spec_ranges_checked():
    spec = xylo.to_xylo(graph(dense("o", [[1.0, -0.5]])))
    with pytest.raises(TargetError, match="weight_shift_in spans 8..8"):
        xylo.check_spec({**spec, "weight_shift_in": np.int8(8)})
    with pytest.raises(TargetError, match="dash_syn spans 0..0"):
        xylo.check_spec({**spec, "dash_syn": np.zeros_like(spec["dash_syn"])})


# ------------------------------------------------------------------ the CLI: export, run, energy
@pytest.fixture(scope="module")
def xylo_data(tmp_path_factory, sdigits8):
    """sdigits classes 0..7 (conftest.sdigits8) and an 8-32-8 model trained on it briefly.
    Returns the folder holding sd8.npz and model.pt."""
    from ahsar_deploy import checkpoint
    from ahsar_deploy.train import train
    d = tmp_path_factory.mktemp("xylo")
    shutil.copy(sdigits8, d / "sd8.npz")
    ckpt = train(data=str(d / "sd8.npz"), hidden=(32,), epochs=3, seed=0, progress=False)
    checkpoint.save(ckpt, d / "model.pt")
    return d


def _json(proc):
    import json
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_export_run_both_backends_energy(xylo_data, tmp_path, cli, error_line):
    """export -> xylo_spec.npz + manifest + calibration record; xylosim and the emulator give
    the same predictions and the same spikes on every layer; lava refused; energy priced
    in cycles only."""
    import json

    from ahsar_deploy import build, runs
    b = tmp_path / "b"
    m = _json(cli("export", xylo_data / "model.pt", "--target", "xylo-audio2", "-o", b, "-q", "--json"))
    assert m["target"] == "xylo-audio2" and [l["n_out"] for l in m["layers"]] == [32, 8]
    assert sorted(p.name for p in b.iterdir()) == sorted(m["files"])
    assert m["layers"][0]["decay_rounding"]["dash_syn"] == 2          # i_decay 1024: keep 0.75, exact
    cal = json.loads((b / "calibration.json").read_text())
    fid = cal["fidelity"]
    assert cal["validation_accuracy"]["xylo"] is not None and len(fid["layers"]) == 2
    assert 0 < fid["free_running"]["prediction_agreement"] <= 1
    assert all(f["cause"] != "decay rounding" for f in fid["findings"])
    spec = xylo.load_spec(b / xylo.SPEC_FILE)                          # never unpickles
    assert spec["weights_in"].shape == (8, 32, 2) and spec["weights_out"].shape == (32, 8)

    sim = _json(cli("run", b, "--backend", "xylosim", "-q", "--json"))
    emu = _json(cli("run", b, "--backend", "emulator", "-q", "--json"))
    assert sim["samples"] == emu["samples"] > 0
    assert sim["predictions"] == emu["predictions"] and sim["accuracy"] == emu["accuracy"]
    assert sim["source"]["prediction_agreement"] == emu["source"]["prediction_agreement"]
    graph, _ = build.load(b)
    caches = [runs.load(b, backend, graph) for backend in ("xylosim", "emulator")]
    np.testing.assert_array_equal(caches[0].keys, caches[1].keys)
    for a, e in zip(*(c.spikes for c in caches)):
        np.testing.assert_array_equal(a, e)
    assert any(s.any() for s in caches[0].spikes)

    line = error_line(cli("run", b, "--backend", "lava", "-q"))
    assert "xylo-audio2" in line and "--backend xylosim or emulator" in line

    rep = _json(cli("energy", b, "-q", "--json"))
    assert rep["backend"] == "xylosim"                                  # its cached spikes are reused
    assert 0 < rep["cycles_per_step"] < rep["cycles_per_step_worst_case"]
    assert rep["dynamic_j_per_inference"] is None and "no joules" in rep["priced"]
    assert json.loads((b / "energy.json").read_text())["cycles_per_step"] == rep["cycles_per_step"]
    assert [c["layer"] for c in rep["sparsity_check"]] == ["layer0", "layer1"]
    assert "own compute model" in error_line(cli("energy", b, "--target", "loihi", "-q"))

    assert cli("report", b, "-q").returncode == 0                       # the page shows what Xylo has
    page = (b / "report.html").read_text()
    assert "<td>xylosim</td>" in page and "<td>emulator</td>" in page and "cycles per step" in page
    assert page.count('src="data:image/png') == 2                   # raster and rates (no energy.png)


def test_cli_strict_refuses_decay_rounding_and_writes_nothing(xylo_data, make_ckpt, tmp_path, cli, error_line):
    """i_decay 410 (keep 0.9) has no exact bit-shift decay: a warning without --strict, and
    with it a one-line refusal naming the layer and the rounding; no build, no temporary
    directory left behind."""
    from ahsar_deploy import checkpoint
    checkpoint.save(make_ckpt([8, 16, 8], steps=8, i_decay=410), tmp_path / "m.pt")
    out = tmp_path / "builds"
    args = ("export", tmp_path / "m.pt", "--target", "xylo-audio2", "--data", xylo_data / "sd8.npz", "-q")
    line = error_line(cli(*args, "-o", out / "strict", "--strict"))
    assert "--strict: layer0: decay rounding" in line and "dash_syn 3 (keep 0.875)" in line
    assert not out.exists() or list(out.iterdir()) == []
    ok = cli(*args, "-o", out / "b")
    assert ok.returncode == 0 and "warning: layer0: decay rounding" in ok.stderr
    assert sorted(p.name for p in out.iterdir()) == ["b"]


def test_cli_refuses_network_over_a_limit(make_ckpt, tmp_path, cli, error_line):
    """64 inputs (digits) are over Xylo's 16: one line naming the limit, no build directory."""
    from ahsar_deploy import checkpoint
    checkpoint.save(make_ckpt([64, 20, 8]), tmp_path / "wide.pt")
    out = tmp_path / "builds"
    line = error_line(cli("export", tmp_path / "wide.pt", "--target", "xylo-audio2", "-o", out / "b", "-q"))
    assert "64 input channels" in line and "16" in line
    assert not out.exists() or list(out.iterdir()) == []


def test_backends_dispatch_on_the_build_target():
    """xylosim refuses a Loihi build and lava / norse a Xylo build, each in one line;
    hw_targets keeps Xylo out of the Loihi target and energy tables."""
    import hw_targets
    from ahsar_deploy.errors import BackendError
    from exporters import BACKENDS
    g = graph(dense("o", [[1.0, 0.5]]))
    for backend, target, fix in (("xylosim", "loihi", "--target xylo-audio2"),
                                 ("lava", "xylo-audio2", "xylosim or emulator"),
                                 ("norse", "xylo-audio2", "xylosim or emulator")):
        with pytest.raises(BackendError, match=fix) as e:
            BACKENDS[backend]("unused", g.with_(target=target), np.zeros((1, 8, 2), np.uint8), 10, False)
        assert "\n" not in str(e.value)
    assert hw_targets.get("xylo-audio2") is XYLO_AUDIO2
    assert "xylo-audio2" not in hw_targets.TARGETS and "xylo-audio2" not in hw_targets.ENERGY_MODELS
    with pytest.raises(TargetError, match="its own builds"):
        hw_targets.energy_model("xylo-audio2")
