"""NIR export: standard nodes that norse runs, model.nir complete (model.net rebuilt
byte for byte), and round trips through norse.torch.from_nir with identical spikes."""
import nir
import numpy as np
import torch

from ahsar_deploy import build, checkpoint, data, emulator
from ahsar_deploy.passes.fold import fold
from exporters import lava, norse as norse_backend
from exporters import nir as nir_exporter


def test_model_nir_rebuilds_model_net_byte_for_byte(small_build, tmp_path):
    graph = nir_exporter.rebuild_netx(small_build / "model.nir", tmp_path / "model.net")
    assert (tmp_path / "model.net").read_bytes() == (small_build / "model.net").read_bytes()
    loaded, _ = build.load(small_build)
    assert [l.vth for l in graph.layers] == [l.vth for l in loaded.layers]


def test_conv_model_nir_rebuilds_model_net(tmp_path, conv_graph):
    g = conv_graph
    nir_exporter.write(g, tmp_path / "model.nir")
    lava.write_netx(g, tmp_path / "a.net")
    nir_exporter.rebuild_netx(tmp_path / "model.nir", tmp_path / "b.net")
    assert (tmp_path / "a.net").read_bytes() == (tmp_path / "b.net").read_bytes()
    r = nir.read(tmp_path / "model.nir")          # NIR's own type check passes
    kinds = [type(r.nodes[k]).__name__ for k in ("input", "fc0", "lif0", "fc1", "flatten2", "fc2", "lif2", "output")]
    assert kinds == ["Input", "Conv2d", "CubaLIF", "Conv2d", "Flatten", "Linear", "CubaLIF", "Output"]
    assert list(r.nodes["fc1"].output_type["output"]) == [4, 3, 2]


def test_build_nir_in_norse_equals_float_model_of_build(small_build):
    graph, _ = build.load(small_build)
    x, _ = build.eval_inputs(graph, "digits", 40)
    got = norse_backend.run(small_build, graph, x)
    want = emulator.run(emulator.float_view(graph), x, integer=False)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"layer {i}")
    assert sum(int(w.sum()) for w in want) > 500


def test_checkpoint_to_nir_to_norse_equals_torch_model(small_model, tmp_path):
    """checkpoint -> float NIR (thresholds as trained) -> norse == our float SNN."""
    ckpt = checkpoint.load(small_model)
    model = checkpoint.build_model(ckpt).double()
    graph = checkpoint.to_graph(small_model)
    nir_exporter.write(graph, tmp_path / "float.nir")
    x = data.encode(data.load("digits").test.x[:60], graph.steps)
    with torch.no_grad():
        _, want = model(torch.from_numpy(x).double())
    got = norse_backend.run_nir(tmp_path / "float.nir", x)
    total = 0
    for i, (w, g) in enumerate(zip(want, got)):
        np.testing.assert_array_equal(g, w.numpy().astype(bool), err_msg=f"layer {i}")
        total += int(g.sum())
    assert total > 500
    # the folded graph (threshold 1) gives the same spikes as well
    nir_exporter.write(fold(graph), tmp_path / "folded.nir")
    got = norse_backend.run_nir(tmp_path / "folded.nir", x)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w.numpy().astype(bool))


def test_conv_nir_in_norse_equals_emulator_float(tmp_path, conv_graph):
    g = conv_graph
    nir_exporter.write(g, tmp_path / "model.nir")
    x = np.random.default_rng(3).random((4, g.steps, 70)) < 0.5
    got = norse_backend.run_nir(tmp_path / "model.nir", x)
    want = emulator.run(emulator.float_view(g), x, integer=False)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"layer {i}")
    assert all(int(w.sum()) > 0 for w in want)


def test_cli_run_backend_norse(small_build, cli):
    import json
    r = cli("run", small_build, "--backend", "norse", "--samples", "30", "--json", "-q")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    graph, _ = build.load(small_build)
    x, y = build.eval_inputs(graph, "digits", 30)
    want = emulator.run(emulator.float_view(graph), x, integer=False)[-1]
    assert out["backend"] == "norse" and out["samples"] == 30
    assert out["accuracy"] == float(np.mean(want.sum(axis=1).argmax(axis=1) == y))


def test_norse_keeps_exact_threshold_ties(tmp_path):
    """Integer weights make v == threshold common; model.nir's numbers are exact in
    binary floating point, so norse breaks no tie (v > vth is strict on both sides)."""
    from ahsar_deploy.ir import DeployGraph, Layer
    layer = Layer(name="d", weight=np.array([[2, 2], [2, 4]]), threshold=np.ones(2), i_decay=1024,
                  v_decay=512, vth=4)
    g = DeployGraph(layers=(layer,), n_inputs=2, steps=3, dataset="random", encoding="rate",
                    method="baseline", source_sha256="", target="loihi")
    x = np.array([[[1, 1], [0, 0], [0, 0]]], dtype=np.uint8)
    want = emulator.run(emulator.float_view(g), x, integer=False)[0]
    # neuron 0: v = 4 = vth at t0 (no spike), 3 + 3.5 = 6.5 at t1 (spike)
    np.testing.assert_array_equal(want[0, :, 0], [False, True, False])
    nir_exporter.write(g, tmp_path / "m.nir")
    np.testing.assert_array_equal(norse_backend.run_nir(tmp_path / "m.nir", x)[0], want)
    np.testing.assert_array_equal(emulator.run(g, x)[0], want)      # and Loihi's integers agree
