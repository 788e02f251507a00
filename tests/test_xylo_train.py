"""Training with Xylo's neuron (ahsar train --neuron xylo, issue 19): the neuron by hand,
the checkpoint and IR record, a trained model's Xylo deployment against its float model,
and the Loihi export refusing such a model."""
import json
import shutil

import numpy as np
import pytest
import torch

from ahsar_deploy import checkpoint
from ahsar_deploy.errors import UnsupportedLayerError
from ahsar_deploy.snn import SNN, mlp_specs


def _two_neurons(neuron: str) -> SNN:
    """1 input -> 1 hidden neuron (w 2.5) -> 1 readout neuron (w 0.75), thresholds 1,
    i_decay 4096 (u keeps nothing: u[t] = W x[t]), v_decay 0 (v keeps everything)."""
    m = SNN(method="baseline", input_shape=(1,), specs=mlp_specs([1, 1, 1]), i_decay=4096, v_decay=0,
            neuron=neuron)
    with torch.no_grad():
        m.layers[0].syn.weight.fill_(2.5)
        m.layers[1].syn.weight.fill_(0.75)
    return m


X = torch.tensor([1.0, 0, 1, 0, 0]).reshape(1, 5, 1)


def test_xylo_neuron_by_hand():
    """hidden: v 2.5 -> 2 events, 0.5 left; 0.5 -> 0; 0.5 + 2.5 = 3 -> 3 events, 0 left.
    readout (cap 1): 2 * 0.75 = 1.5 -> 1, 0.5 left; 0.5 -> 0; 0.5 + 3 * 0.75 = 2.75 -> 1
    (capped), 1.75 left; 1.75 -> 1, 0.75 left; 0.75 -> 0."""
    m = _two_neurons("xylo")
    assert [(l.reset, l.max_events) for l in m.layers] == [("subtract", 31), ("subtract", 1)]
    counts, (hid, out) = m(X)
    assert hid.flatten().tolist() == [2, 0, 3, 0, 0]
    assert out.flatten().tolist() == [1, 0, 1, 1, 0]
    assert counts.flatten().tolist() == [3]
    counts.sum().backward()                           # the surrogate carries a gradient
    assert all(torch.isfinite(l.syn.weight.grad).all() and l.syn.weight.grad.abs().sum() > 0 for l in m.layers)
    # the same network with Loihi's neuron: one spike per step, reset to zero (readout
    # 0.75, kept, + 0.75 = 1.5 at step 2)
    counts, (hid, out) = _two_neurons("loihi")(X)
    assert hid.flatten().tolist() == [1, 0, 1, 0, 0] and out.flatten().tolist() == [0, 0, 1, 0, 0]


def test_float_reference_equals_trainer_and_checkpoint_records_neuron(tmp_path):
    """The checkpoint says how the neurons behave; its IR layers carry reset "subtract" and
    the event caps, and exporters.xylo.run_float (the export's float reference) gives the
    trainer's counts."""
    from exporters import xylo
    m = _two_neurons("xylo")
    ck = checkpoint.make_checkpoint(m, data=type("D", (), {"name": "hand", "n_features": 1, "n_classes": 1})(),
                                    steps=5, seed=0, history=[], test_accuracy=0.5, test_rates=[1.0, 0.6])
    assert ck["neuron"]["reset"] == "subtract" and ck["neuron"]["max_events"] == 31
    assert ck["neuron"]["readout_max_events"] == 1
    checkpoint.save(ck, tmp_path / "m.pt")
    g = checkpoint.to_graph(tmp_path / "m.pt")
    assert [(l.reset, l.max_events) for l in g.layers] == [("subtract", 31), ("subtract", 1)]
    hid, out = xylo.run_float(g, X.numpy().astype(np.uint8))
    assert hid.flatten().tolist() == [2, 0, 3, 0, 0] and out.flatten().tolist() == [1, 0, 1, 1, 0]
    # a Loihi checkpoint keeps its record as before
    lo = checkpoint.make_checkpoint(_two_neurons("loihi"), data=type("D", (), {"name": "hand", "n_features": 1,
                                                                              "n_classes": 1})(),
                                    steps=5, seed=0, history=[], test_accuracy=0.5, test_rates=[0.4, 0.0])
    assert lo["neuron"] == {"model": "cuba-lif", "i_decay": 4096, "v_decay": 0, "reset": "zero",
                            "spike": "v > theta", "dt_s": 1e-3}


@pytest.mark.parametrize("field,value", [("max_events", 7), ("reset", "subtract-twice"),
                                         ("readout_max_events", "1"), ("max_events", torch.ones(1))])
def test_bad_neuron_record_refused_in_one_line(tmp_path, field, value):
    ck = checkpoint.make_checkpoint(_two_neurons("xylo"), data=type("D", (), {"name": "hand", "n_features": 1,
                                                                              "n_classes": 1})(),
                                    steps=5, seed=0, history=[], test_accuracy=0.5, test_rates=[1.0, 0.6])
    ck["neuron"][field] = value
    checkpoint.save(ck, tmp_path / "m.pt")
    with pytest.raises(UnsupportedLayerError) as e:
        checkpoint.to_graph(tmp_path / "m.pt")
    assert "\n" not in str(e.value) and "reset mode" in str(e.value) and "xylo: reset 'subtract'" in str(e.value)


# ------------------------------------------------------------------ trained, deployed
@pytest.fixture(scope="module")
def xylo_trained(tmp_path_factory, sdigits8):
    """sdigits classes 0..7 (conftest.sdigits8) and an 8-32-8 AHSAR mlp trained
    5 epochs with --neuron xylo, through the CLI. Returns the folder (sd8.npz, model.pt)."""
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("xylo_train")
    shutil.copy(sdigits8, d / "sd8.npz")
    p = subprocess.run([sys.executable, "-m", "ahsar_deploy.cli", "train", "--data", str(d / "sd8.npz"),
                        "--hidden", "32", "--epochs", "5", "--neuron", "xylo", "--seed", "0", "-q",
                        "-o", str(d / "model.pt")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return d


def test_trained_xylo_model_deploys_close_to_float(xylo_trained, tmp_path, cli):
    """Exported to xylo-audio2 and run on XyloSim over the whole test split (289 samples):
    accuracy within 2 pp of the float model's, and the same class on >= 90 % of samples
    (benchmarks/xylo_digits.py: a Loihi-neuron model of the same recipe agrees on far
    fewer). The export's float reference has the trained semantics: no multi-event finding."""
    pytest.importorskip("rockpool")
    pytest.importorskip("xylosim")
    from ahsar_deploy import build, data
    from exporters import xylo
    ck = checkpoint.load(xylo_trained / "model.pt")
    assert ck["neuron"]["reset"] == "subtract"
    b = tmp_path / "b"
    p = cli("export", xylo_trained / "model.pt", "--target", "xylo-audio2", "-o", b, "-q", "--json")
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert [(l["reset"], l["max_events"]) for l in m["layers"]] == [("subtract", 31), ("subtract", 1)]
    assert not any("subtraction" in d or "31 events" in d for d in m["xylo"]["differences"])
    cal = json.loads((b / "calibration.json").read_text())
    assert all(f["cause"] != "multi-event steps" for f in cal["fidelity"]["findings"])
    assert all("free_event_agreement" in l for l in cal["fidelity"]["layers"])
    graph, _ = build.load(b)
    assert [l.reset for l in graph.layers] == ["subtract", "subtract"]
    ds = data.load(xylo_trained / "sd8.npz")
    x, y = data.encode(ds.test.x, graph.steps, graph.encoding), ds.test.y
    pred_sim = xylo.run_build(b, graph, x, "xylosim")[-1].sum(axis=1).argmax(axis=1)
    model = checkpoint.build_model(ck)
    with torch.no_grad():
        pred_float = model(torch.from_numpy(x).float())[0].numpy().argmax(axis=1)
    acc_float, acc_sim = float(np.mean(pred_float == y)), float(np.mean(pred_sim == y))
    assert abs(acc_float - ck["test_accuracy"]) < 1e-9
    assert abs(acc_sim - acc_float) <= 0.02, (acc_float, acc_sim)
    assert np.mean(pred_sim == pred_float) >= 0.90
    # the export's float reference (float64 numpy) is the trained model (float32 torch)
    ref = xylo.run_float(graph, x)[-1].sum(axis=1).argmax(axis=1)
    assert np.mean(ref == pred_float) >= 0.99
    # `ahsar run` compares with the float model of the same semantics (was: Loihi's reset)
    p = cli("run", b, "--backend", "xylosim", "--data", xylo_trained / "sd8.npz", "-q", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["source"]["accuracy"] == float(np.mean(ref == y))
    assert r["source"]["prediction_agreement"] == float(np.mean(ref == pred_sim))


def test_loihi_export_refuses_xylo_model(xylo_trained, tmp_path, cli, error_line):
    out = tmp_path / "builds"
    line = error_line(cli("export", xylo_trained / "model.pt", "--target", "loihi", "-o", out / "b", "-q"))
    assert "--target xylo-audio2" in line and "--neuron loihi" in line and "subtraction" in line
    assert not out.exists() or list(out.iterdir()) == []


def test_train_refuses_cnn_and_hoyer_with_xylo_neuron(tmp_path, cli, error_line):
    line = error_line(cli("train", "--arch", "cnn", "--neuron", "xylo", "--epochs", "1", "-q", "-o",
                           tmp_path / "m.pt"))
    assert "--neuron xylo" in line and "cnn" in line
    line = error_line(cli("train", "--method", "hoyer", "--neuron", "xylo", "--epochs", "1", "-q", "-o",
                           tmp_path / "m.pt"))
    assert "--neuron xylo" in line and "hoyer" in line
    assert not (tmp_path / "m.pt").exists()
