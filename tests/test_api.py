"""The Python API (issue 15): export -> run -> energy on an in-memory nir.NIRGraph and
numpy arrays, no file given for graph or data; the public names and the version."""
import subprocess
import sys

import nir
import numpy as np
import pytest

import ahsar_deploy as ad
from ahsar_deploy import data, emulator
from ahsar_deploy.build import load


def _graph(rng):
    w1, w2 = rng.normal(0, 0.4, (32, 64)), rng.normal(0, 0.4, (10, 32))
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([64])), "fc1": nir.Linear(weight=w1),
        "if1": nir.IF(r=np.ones(32), v_threshold=np.ones(32)), "fc2": nir.Linear(weight=w2),
        "if2": nir.IF(r=np.ones(10), v_threshold=np.ones(10)), "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"), ("if2", "output")])


def test_export_run_energy_on_in_memory_objects(tmp_path):
    ds = data.load("digits")
    x_cal = data.encode(ds.train.x[:200], 10, "rate")          # (N, T, F) spikes: they set T
    manifest = ad.export(_graph(np.random.default_rng(0)), "loihi", tmp_path / "b", calib=x_cal, progress=False)
    assert manifest["steps"] == 10 and manifest["source"]["file"] == "(in-memory NIR graph)"
    x_test, y_test = ds.test.x[:50], ds.test.y[:50]             # intensities: encoded as the build's rate code
    r = ad.run(tmp_path / "b", x_test, y_test)
    graph, _ = load(tmp_path / "b")
    want = emulator.run(graph, data.encode(x_test, 10, "rate"))[-1].sum(axis=1).argmax(axis=1)
    assert r["predictions"] == want.tolist() and r["accuracy"] == np.mean(want == y_test)
    assert r["dataset"] == data.IN_MEMORY and 0 <= r["source"]["prediction_agreement"] <= 1
    e = ad.energy(tmp_path / "b", x_test)
    assert e["total_j_per_inference"] > 0 and (tmp_path / "b" / "energy.json").is_file()
    assert [c["status"] for c in e["sparsity_check"]] == ["not checked"] * 2   # no training rates known
    assert ad.inspect(tmp_path / "b")["steps"] == 10


def test_export_from_arrays_with_labels(tmp_path):
    ds = data.load("digits")
    arrays = ad.from_arrays(ds.train.x, ds.train.y, ds.test.x, ds.test.y)
    m = ad.export(_graph(np.random.default_rng(1)), "loihi", tmp_path / "b", data=arrays, steps=8, progress=False)
    assert m["dataset"] == data.IN_MEMORY
    r = ad.run(tmp_path / "b", data=arrays, samples=30)
    assert r["samples"] == 30 and r["accuracy"] is not None
    with pytest.raises(ad.DeployError, match="pass --data"):
        ad.run(tmp_path / "b")                                   # arrays are not on disk
    with pytest.raises(ad.DeployError, match=r"x: shape \(4, 63\)"):
        ad.run(tmp_path / "b", np.zeros((4, 63)))


def test_public_names_and_version():
    assert set(ad.__all__) >= {"export", "run", "energy", "inspect", "AHSAR", "AHSARConfig", "attach",
                               "from_arrays", "bin_events", "DeployError", "__version__"}
    for name in ad.__all__:
        obj = getattr(ad, name)
        assert name == "__version__" or obj.__doc__, name
    r = subprocess.run([sys.executable, "-m", "ahsar_deploy.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"ahsar-deploy {ad.__version__}"
    # importing the package does not import torch (the CLI installs its handlers first)
    r = subprocess.run([sys.executable, "-c", "import sys, ahsar_deploy; print('torch' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_inspect_an_in_memory_graph_and_export_into_an_empty_directory(tmp_path):
    g = _graph(np.random.default_rng(3))
    d = ad.inspect(g)
    assert [l["n_out"] for l in d["layers"]] == [32, 10] and d["path"] == "NIR graph (in memory)"
    (tmp_path / "empty").mkdir()
    x_cal = data.encode(data.load("digits").train.x[:50], 6, "rate")
    assert ad.export(g, "loihi", tmp_path / "empty", calib=x_cal)["steps"] == 6
    with pytest.raises(ad.DeployError, match="exists; pass --force"):
        ad.export(g, "loihi", tmp_path / "empty", calib=x_cal)


@pytest.mark.parametrize("call,want", [
    (lambda b: ad.export(None, "loihi", b), "model: a NoneType"),
    (lambda b: ad.export(_graph(np.random.default_rng(0)), "loihi", None), "out_dir: a NoneType"),
    (lambda b: ad.export(_graph(np.random.default_rng(0)), "loihi", b, calib=[["a"]]), "calib: dtype"),
    (lambda b: ad.run(3), "build: a int"),
    (lambda b: ad.inspect(None), "inspect: a NoneType"),
    (lambda b: ad.attach(3), "attach: a int"),
    (lambda b: ad.annotate_nir(None, 3), "annotate_nir(graph, attached)"),
])
def test_wrong_argument_types_are_one_line_deploy_errors(call, want, tmp_path):
    with pytest.raises(ad.DeployError, match=want.replace("(", r"\(").replace(")", r"\)")) as e:
        call(tmp_path / "b")
    assert "\n" not in str(e.value)


def test_calibration_as_a_torch_tensor(tmp_path):
    import torch
    x = data.encode(data.load("digits").train.x[:40], 6, "rate")
    m = ad.export(_graph(np.random.default_rng(4)), "loihi", tmp_path / "b", calib=torch.from_numpy(x))
    assert m["steps"] == 6
