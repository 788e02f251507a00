"""NIR semantics at the edges of Loihi's decays.

1. tau = dt (a memoryless membrane), also with tau stored in float32, imports with the
   nearest legal decay (v_decay 4095), says so, and deploys; tau < dt is refused at import
   with numbers that differ when they differ, and the norse hint only where it can apply.
2. A layer without voltage leak (v_decay 0) is written to model.nir exactly: IF
   (i_decay 4096), which norse runs spike for spike, or LI -> IF (i_decay < 4096), which
   norse cannot run and the norse backend refuses; both read back and rebuild model.net.
"""
import json
import logging

import nir
import numpy as np
import pytest

from ahsar_deploy import build, emulator
from ahsar_deploy.errors import BackendError, FidelityError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer
from exporters import lava, nir_import
from exporters import nir as nir_exporter
from exporters import norse as norse_backend


def _lif_graph(tau, dt, n=10, seed=1):
    """Input 64 -> Linear -> LIF(tau, r = tau/dt: gain 1) -> Output, as snnTorch writes Leaky."""
    w = np.random.default_rng(seed).normal(size=(n, 64))
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([64])), "fc": nir.Linear(weight=w),
        "lif": nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n),
                       v_threshold=np.ones(n)),
        "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False), w


@pytest.mark.parametrize("tau,dt", [(1e-3, 1e-3), (np.float32(1e-4), 1e-4)],
                         ids=["float64-1ms", "float32-snntorch-beta0"])
def test_memoryless_membrane_imports_with_nearest_legal_decay(tau, dt, caplog):
    g, w = _lif_graph(tau, dt)
    with caplog.at_level(logging.WARNING, logger="exporters.nir_import"):
        graph = nir_import.from_graph(g, dataset="digits", steps=8, dt_s=dt)
    l = graph.layers[0]
    assert (l.i_decay, l.v_decay) == (4096, 4095)          # dv is 12 bit: 4096 does not exist
    np.testing.assert_allclose(l.weight, w, rtol=1e-6)      # gain (dt/tau) r = 1
    rep = graph.notes["import"]["layers"][0]
    assert rep["v_decay_exact"] == 4096 and rep["v_decay"] == 4095
    assert len(rep["decay_notes"]) == 1 and "deployed 4095" in rep["decay_notes"][0]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "node 'lif' (LIF)" in warned[0] and "exact v_decay 4096" in warned[0]


def test_memoryless_membrane_exports_and_inspect_reports_it(tmp_path, cli):
    """Was: inspect said v_decay 4096, export failed after calibration ('voltage decay')."""
    g, _ = _lif_graph(1e-3, 1e-3)
    nir.write(str(tmp_path / "m.nir"), g)
    r = cli("inspect", tmp_path / "m.nir", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["layers"][0]
    assert (d["v_decay"], d["v_decay_exact"]) == (4095, 4096)
    assert "warning:" in r.stderr and "deployed 4095" in r.stderr
    build.export(tmp_path / "m.nir", "loihi", tmp_path / "b", calib_samples=64, progress=False,
                 dataset="digits", steps=8)
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["layers"][0]["v_decay"] == 4095
    assert m["import"]["layers"][0]["v_decay_exact"] == 4096 and m["import"]["layers"][0]["decay_notes"]
    c = json.loads((tmp_path / "b" / "calibration.json").read_text())
    assert [f["cause"] for f in c["fidelity"]["findings"]][:1] == ["decay moved"]
    with pytest.raises(FidelityError, match="--strict: fc: decay moved: .*deployed 4095"):
        build.export(tmp_path / "m.nir", "loihi", tmp_path / "b2", calib_samples=64, progress=False,
                     dataset="digits", steps=8, strict=True)
    assert not (tmp_path / "b2").exists()


@pytest.mark.parametrize("tau,dt,shown,hint", [
    (0.99999e-4, 1e-4, ("tau=9.9999e-05 s < dt=0.0001 s", "dt/tau=1.00001"), False),
    (np.float32(0.5e-4), 1e-4, ("tau=5e-05 s < dt=0.0001 s", "dt/tau=2.00000005"), False),
    (5e-6, 1e-3, ("tau=5e-06 s < dt=0.001 s", "dt/tau=200"), True),   # norse 1.1's dt*tau
])
def test_tau_below_dt_is_refused_at_import_with_distinct_numbers(tau, dt, shown, hint):
    g, _ = _lif_graph(tau, dt)
    with pytest.raises(UnsupportedLayerError) as e:
        nir_import.from_graph(g, dataset="digits", steps=8, dt_s=dt)
    msg = str(e.value)
    assert "\n" not in msg and "node 'lif' (LIF)" in msg and "--dt" in msg
    for s in shown:
        assert s in msg
    assert ("--nir-tau norse" in msg) == hint


def test_float32_tau_just_above_tolerance_is_still_refused():
    g, _ = _lif_graph(1e-4 / (1 + 3e-6), 1e-4)      # dt/tau = 1 + 3e-6 > 1 + REL_TOL
    with pytest.raises(UnsupportedLayerError, match=r"dt/tau=1\.000003 > 1"):
        nir_import.from_graph(g, dataset="digits", steps=8, dt_s=1e-4)


def _one_layer(i_decay, seed=0, n_out=10, vth=300):
    rng = np.random.default_rng(seed)
    layer = Layer(name="if0", weight=2 * rng.integers(-20, 40, size=(n_out, 64)), threshold=np.ones(n_out),
                  i_decay=i_decay, v_decay=0, vth=vth)
    return DeployGraph(layers=(layer,), n_inputs=64, steps=16, dataset="random", encoding="rate",
                       method="baseline", source_sha256="", target="loihi")


def _round_trips(g, path, tmp_path):
    """model.nir rebuilds model.net byte for byte and reads back as the same float model."""
    lava.write_netx(g, tmp_path / "a.net")
    nir_exporter.rebuild_netx(path, tmp_path / "b.net")
    assert (tmp_path / "a.net").read_bytes() == (tmp_path / "b.net").read_bytes()
    back = nir_import.to_graph(path)
    (l, ), (b, ) = g.layers, back.layers
    assert (b.i_decay, b.v_decay) == (l.i_decay, 0)
    np.testing.assert_array_equal(b.weight, l.weight * 2.0 ** l.weight_exp)
    np.testing.assert_array_equal(b.threshold, np.full(l.channels, float(l.vth)))
    return back


def test_if_layer_model_nir_runs_in_norse_spike_for_spike(tmp_path):
    """v_decay 0, i_decay 4096: was CubaLIF(tau_mem = inf), which never integrates (norse: 0 spikes)."""
    g = _one_layer(4096)
    nir_exporter.write(g, tmp_path / "model.nir")
    r = nir.read(str(tmp_path / "model.nir"))              # NIR's own type check passes
    assert [type(r.nodes[k]).__name__ for k in ("input", "fc0", "lif0", "output")] == \
        ["Input", "Linear", "IF", "Output"]
    x = np.random.default_rng(3).random((20, g.steps, 64)) < 0.3
    want = emulator.run(emulator.float_view(g), x, integer=False)[0]
    got = norse_backend.run_nir(tmp_path / "model.nir", x)[0]
    np.testing.assert_array_equal(got, want)
    assert int(want.sum()) > 1000
    np.testing.assert_array_equal(emulator.run(g, x)[0], want)     # no decay: Loihi's integers agree
    back = _round_trips(g, tmp_path / "model.nir", tmp_path)
    np.testing.assert_array_equal(emulator.run(back, x, integer=False)[0], want)


def test_if_layer_build_norse_backend_equals_float_model(tmp_path):
    """An imported IF layer (v_decay 0) exported for Loihi: `ahsar run --backend norse` agrees."""
    rng = np.random.default_rng(0)
    w = rng.integers(-2, 4, size=(10, 64)).astype(np.float64)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([64])), "fc": nir.Linear(weight=w),
        "spk": nir.IF(r=np.ones(10), v_threshold=np.full(10, 3.5)),
        "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "fc"), ("fc", "spk"), ("spk", "output")], type_check=False)
    nir.write(str(tmp_path / "if.nir"), g)
    build.export(tmp_path / "if.nir", "loihi", tmp_path / "b", calib_samples=64, progress=False,
                 dataset="digits", steps=8)
    q, _ = build.load(tmp_path / "b")
    assert (q.layers[0].i_decay, q.layers[0].v_decay) == (4096, 0)
    x, _ = build.eval_inputs(q, "digits", 40)
    want = emulator.run(emulator.float_view(q), x, integer=False)[0]
    got = norse_backend.run(tmp_path / "b", q, x)[0]
    np.testing.assert_array_equal(got, want)
    assert int(want.sum()) > 50


def test_li_if_layer_is_exact_in_nir_and_refused_by_norse(tmp_path):
    """v_decay 0, i_decay < 4096: LI -> IF in model.nir (exact), read back and rebuilt;
    norse's from_nir has no LI node, so the norse backend refuses in one line."""
    g = _one_layer(1024)
    nir_exporter.write(g, tmp_path / "model.nir")
    r = nir.read(str(tmp_path / "model.nir"))
    assert [type(r.nodes[k]).__name__ for k in ("input", "fc0", "cur0", "lif0", "output")] == \
        ["Input", "Linear", "LI", "IF", "Output"]
    back = _round_trips(g, tmp_path / "model.nir", tmp_path)
    x = np.random.default_rng(3).random((20, g.steps, 64)) < 0.3
    want = emulator.run(emulator.float_view(g), x, integer=False)[0]
    np.testing.assert_array_equal(emulator.run(back, x, integer=False)[0], want)
    assert int(want.sum()) > 1000
    with pytest.raises(BackendError, match=r"layer 'if0' .*LI -> IF.*--backend emulator") as e:
        norse_backend.run_nir(tmp_path / "model.nir", x)
    assert "\n" not in str(e.value)
