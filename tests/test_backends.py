"""Lava's Loihi simulation against the integer model, and the build's files."""
import json

import nir
import numpy as np

from ahsar_deploy import build, checkpoint, data, emulator
from exporters import lava


def test_lava_equals_integer_model_on_every_spike(small_build):
    graph, _ = build.load(small_build)
    x, y = build.eval_inputs(graph, "digits", 30)
    got = lava.run(small_build, x, graph.steps, timeout_s=600, progress=False)
    want = emulator.run(graph, x)
    assert len(got) == len(want) == 3
    for i, (g, w) in enumerate(zip(got, want)):
        agreement = float(np.mean(g == w))
        # Agreement found: 1.0 at every layer, sample and step (exact integer maths).
        assert agreement == 1.0, f"layer {i}: agreement {agreement}"
    assert sum(int(w.sum()) for w in want) > 500


def test_build_files(small_build, small_model):
    m = json.loads((small_build / "manifest.json").read_text())
    assert m["target"] == "loihi"
    assert m["source"]["sha256"] == checkpoint.sha256(small_model)
    assert [l["n_out"] for l in m["layers"]] == [32, 16, 10]
    for l in m["layers"]:
        assert 1 <= l["vth_mant"] <= 131071 and l["du"] == l["i_decay"] - 1
    g = nir.read(small_build / "model.nir")
    assert {"input", "fc0", "lif0", "fc2", "lif2", "output"} <= set(g.nodes)
    graph, _ = build.load(small_build)
    # NIR's weights and thresholds are in integer units (exact in float32)
    np.testing.assert_array_equal(g.nodes["fc1"].weight, graph.layers[1].weight * 2.0 ** graph.layers[1].weight_exp)
    np.testing.assert_array_equal(g.nodes["lif1"].v_threshold, np.full(16, graph.layers[1].vth))
    np.testing.assert_array_equal(g.nodes["lif1"].metadata["weight_int"], graph.layers[1].weight)


def test_quantized_accuracy_close_to_float(small_build):
    cal = json.loads((small_build / "calibration.json").read_text())
    acc = cal["validation_accuracy"]
    assert acc["folded"] == acc["float"]
    assert abs(acc["quantized"] - acc["float"]) <= 0.03, acc
    for l in cal["layers"]:
        assert l["spike_agreement"] > 0.97, l


def test_export_is_deterministic(small_model, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build.export(small_model, "loihi", a, calib_samples=32, progress=False)
    build.export(small_model, "loihi", b, calib_samples=32, progress=False)
    for name in ("model.net", "manifest.json", "calibration.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
