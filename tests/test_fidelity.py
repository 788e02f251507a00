"""Faithful or loud (passes/fidelity.py, passes/calibrate.py): the integer build either
gives the source model's spikes, or the export names the cause and --strict refuses it.

References are computed here from NIR's equations (forward Euler, current first, as
README "NIR in and out" states), independently of the emulator."""
import json

import nir
import numpy as np

from ahsar_deploy import emulator
from ahsar_deploy.passes.calibrate import calibrate
from ahsar_deploy.passes.fidelity import fidelity
from ahsar_deploy.passes.fold import fold
from exporters import nir_import
from hw_targets import LOIHI

N_IN = 64   # digits' input size, so the graphs also export with --data digits


def _nir_reference(w, x, dt, tau_syn, tau_mem, r, w_in, thr):
    """NIR CubaLIF by hand: I += dt/tau_syn (-I + w_in W x); v += dt/tau_mem (-v + r I);
    spike if v > thr, then v = 0. x (T, n_in) -> spikes (T, n_out)."""
    i = np.zeros(len(w))
    v = np.zeros(len(w))
    out = []
    for xt in x:
        i = i + dt / tau_syn * (-i + w_in * (w @ xt))
        v = v + dt / tau_mem * (-v + r * i)
        s = v > thr
        v[s] = 0.0
        out.append(s)
    return np.array(out)


def _overflow_graph():
    """Issue 14 input 1: 2 CubaLIF neurons, tau_syn 1.024 s, tau_mem 2 ms, r = w_in = 1,
    threshold 0.05, weights 1 and 0.5 from 8 inputs (the other 56 unconnected)."""
    w = np.zeros((2, N_IN))
    w[0, :8], w[1, :8] = 1.0, 0.5
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([N_IN])), "fc": nir.Linear(weight=w),
        "lif": nir.CubaLIF(tau_syn=np.full(2, 1.024), tau_mem=np.full(2, 2e-3), r=np.ones(2),
                           w_in=np.ones(2), v_leak=np.zeros(2), v_threshold=np.full(2, 0.05),
                           v_reset=np.zeros(2)),
        "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    return g, w


def test_current_that_would_wrap_is_calibrated_into_range():
    """With k putting the largest weight at 254, u passes 2**23 at about step 66 and the
    neurons fall silent (113 / 117 spikes instead of 191 / 181). Calibration now caps k
    so that u and v fit: the integer build gives NIR's spikes exactly."""
    g, w = _overflow_graph()
    graph = nir_import.from_graph(g, dataset="digits", steps=200, dt_s=1e-3)
    x = np.zeros((1, 200, N_IN), dtype=np.uint8)
    x[:, :, :8] = 1
    want = _nir_reference(w, x[0], 1e-3, 1.024, 2e-3, 1.0, 1.0, 0.05)
    assert want.sum(axis=0).tolist() == [191, 181]
    assert [int(np.flatnonzero(want[:, n])[0]) for n in range(2)] == [7, 13]
    folded = fold(graph)
    q, _ = calibrate(folded, x, LOIHI)
    got = emulator.run(q, x)[-1][0]
    np.testing.assert_array_equal(got, want)
    report = fidelity(folded, q, x, LOIHI)
    assert report["findings"] == [] and report["layers"][0]["u_wrap"] == 0

    # calibrated on half as much input, the same inputs wrap: loud, with the count
    weak = x.copy()
    weak[:, 1::2] = 0
    q_weak, _ = calibrate(folded, weak, LOIHI)
    report = fidelity(folded, q_weak, x, LOIHI)
    causes = [f["cause"] for f in report["findings"]]
    assert "current overflow" in causes and report["layers"][0]["u_wrap"] > 0
    assert "current overflow possible" in [f["cause"] for f in fidelity(folded, q_weak, weak, LOIHI)["findings"]]


def test_wrap_and_saturation_counts_match_a_hand_count():
    """One neuron, 64 inputs at weight 254, no current decay: u grows by 64*254*64 per
    step and wraps at 24 bits (Lava's two-sided where); counted against plain integers."""
    from ahsar_deploy.ir import Layer
    layer = Layer(name="l", weight=np.full((1, N_IN), 254), threshold=np.ones(1), i_decay=1, v_decay=0,
                  vth=LOIHI.vth_max, scale=float(LOIHI.vth_max))
    x = np.ones((1, 30, N_IN), dtype=np.uint8)
    ev = {}
    emulator.layer_int(layer, x, LOIHI, events=ev)
    m, a = 2 ** 23, 254 * N_IN * 64
    u = v = wraps = sats = 0
    for _ in range(30):
        dc = (u * 4095 // 4096 if u >= 0 else -((-u * 4095) // 4096)) + a
        u = dc - 2 * m if dc > m else (dc + 2 * m if dc <= -m else dc)
        wraps += u != dc
        vr = (v * 4096 // 4096 if v >= 0 else -((-v * 4096) // 4096)) + u
        v_new = min(max(vr, -m + 1), m - 1)
        sats += v_new != vr
        v = 0 if v_new > LOIHI.vth_max << 6 else v_new
    assert wraps > 0 and sats > 0
    assert ev == {"u_wrap": wraps, "v_saturate": sats}


def _silencing_graph(path):
    """Issue 14 input 2: two IF neurons, weight 1 from input 0, thresholds 1 and 300."""
    w = np.zeros((2, N_IN))
    w[:, 0] = 1.0
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([N_IN])), "fc": nir.Linear(weight=w),
        "if": nir.IF(r=np.ones(2), v_threshold=np.array([1.0, 300.0])),
        "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "fc"), ("fc", "if"), ("if", "output")], type_check=False)
    nir.write(str(path), g)
    return g


def test_neuron_silenced_by_the_layer_threshold_is_named(tmp_path, cli, cli_inproc):
    """Neuron 1 fires at steps 300 and 601 in NIR; with one threshold per layer its weight
    rounds to 0. The export says so on stderr and in calibration.json; --strict refuses."""
    g = _silencing_graph(tmp_path / "if.nir")
    graph = nir_import.from_graph(g, dataset="digits", steps=700, dt_s=1e-3)
    x = np.zeros((1, 700, N_IN), dtype=np.uint8)
    x[:, :, 0] = 1
    ref = emulator.run(graph, x, integer=False)[-1][0]
    assert np.flatnonzero(ref[:, 1]).tolist() == [300, 601]

    r = cli("export", tmp_path / "if.nir", "--data", "digits", "--steps", "8", "-o", tmp_path / "b", "-q")
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")
                and "output neurons" not in ln]   # 2 outputs on digits: the labels warning too
    assert len(warnings) == 1 and "fc: silenced neurons: 1 neuron(s) (1)" in warnings[0], r.stderr
    fid = json.loads((tmp_path / "b" / "calibration.json").read_text())["fidelity"]
    assert [f["cause"] for f in fid["findings"]] == ["silenced neurons"]
    assert "Fidelity" in (tmp_path / "b" / "calibration.md").read_text()

    code, _, err = cli_inproc("export", tmp_path / "if.nir", "--data", "digits", "--steps", "8",
                              "-o", tmp_path / "s", "--strict", "-q")
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("warning:", "calibrating on"))]
    assert code == 1 and len(lines) == 1 and "--strict: fc: silenced neurons" in lines[0], err
    assert not (tmp_path / "s").exists()


def test_silent_first_layer_deploys_loudly_instead_of_failing(tmp_path, caplog):
    """First-layer weights far below threshold: no spike reaches the readout, the refit
    gives it zero weights. The export used to fail naming the wrong layer ('linear_1 has
    all-zero weights'); now the refit is dropped and the silenced layer is named."""
    from ahsar_deploy import build
    rng = np.random.default_rng(0)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([N_IN])),
        "linear": nir.Linear(weight=rng.normal(size=(32, N_IN)) * 1e-6),
        "lif": nir.LIF(tau=np.full(32, 5e-3), r=np.ones(32), v_leak=np.zeros(32), v_threshold=np.ones(32)),
        "linear_1": nir.Linear(weight=rng.normal(size=(10, 32))),
        "lif_1": nir.LIF(tau=np.full(10, 1e-2), r=np.ones(10), v_leak=np.zeros(10), v_threshold=np.ones(10)),
        "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "linear"), ("linear", "lif"), ("lif", "linear_1"), ("linear_1", "lif_1"),
               ("lif_1", "output")], type_check=False)
    nir.write(str(tmp_path / "weak.nir"), g)
    with caplog.at_level("WARNING"):
        build.export(tmp_path / "weak.nir", "loihi", tmp_path / "b", dataset="digits", steps=8,
                     calib_samples=64, qat="off", progress=False)
    messages = [r.getMessage() for r in caplog.records]
    assert any("readout refit dropped" in m for m in messages), messages
    assert any(m.startswith("warning: linear: silenced neurons: 32 neuron(s)") for m in messages), messages
    acc = json.loads((tmp_path / "b" / "calibration.json").read_text())["validation_accuracy"]
    assert acc["refit"] is None and acc["chosen"] == "quantized"
