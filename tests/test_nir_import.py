"""NIR import: graphs written by other libraries (norse's to_nir in the test itself;
sinabs- and snnTorch-style graphs built with nir's own classes the way those libraries
write them) deploy to Loihi and run on Lava; every malformed field is named."""
import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ahsar_deploy import build, data, emulator
from ahsar_deploy.errors import DeployError, ModelFileError, UnsupportedLayerError
from exporters import nir_import


def _norse_graph(path):
    """A 64-32-10 norse network with LIFCells, written by norse.torch.to_nir."""
    import norse.torch as nt
    torch.manual_seed(0)

    def params(n):
        return nt.LIFParameters(tau_mem_inv=torch.full((n,), 100.0), tau_syn_inv=torch.full((n,), 200.0),
                                v_th=torch.full((n,), 0.5), v_leak=torch.zeros(n))
    l1, l2 = torch.nn.Linear(64, 32, bias=False), torch.nn.Linear(32, 10, bias=False)
    with torch.no_grad():
        l1.weight.mul_(60.0)
        l2.weight.mul_(120.0)
    model = nt.SequentialState(l1, nt.LIFCell(params(32)), l2, nt.LIFCell(params(10)))
    g = nt.to_nir(model, torch.zeros(64))
    nir.write(str(path), g)
    return g


def test_norse_written_graph_exports_to_loihi_and_runs_on_lava(tmp_path, cli, lava_equals_emulator):
    path = tmp_path / "norse.nir"
    _norse_graph(path)
    # norse 1.1 writes tau = dt * tau (1e-5 s): below dt, so rejected unless told
    with pytest.raises(UnsupportedLayerError, match=r"node '1' \(CubaLIF\): tau_syn=5e-06 s < dt=0.001 s.*--nir-tau norse"):
        nir_import.to_graph(path, dataset="digits", steps=8)
    r = cli("export", path, "--target", "loihi", "--data", "digits", "--steps", "8", "--nir-tau", "norse",
            "-o", tmp_path / "build", "--calib-samples", "64", "-q")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "build" / "manifest.json").read_text())
    # tau_syn 5 ms, tau_mem 10 ms at dt 1 ms -> decays 0.2 and 0.1 of 4096
    assert [(l["i_decay"], l["v_decay"]) for l in m["layers"]] == [(819, 410), (819, 410)]
    assert m["import"]["tau_convention"] == "norse" and m["dataset"] == "digits"
    # the user's own weights changed by QAT or the refit: said on stderr, not only in calibration.json
    chosen = json.loads((tmp_path / "build" / "calibration.json").read_text())["validation_accuracy"]["chosen"]
    assert ("changed your model's weights" in r.stderr) == (chosen != "quantized"), (chosen, r.stderr)
    graph, _ = build.load(tmp_path / "build")
    x, _ = build.eval_inputs(graph, "digits", 4)
    want = lava_equals_emulator(tmp_path / "build", graph, x)
    assert int(want[0].sum()) > 20 and int(want[1].sum()) > 0


def _sinabs_style_conv(w1, w2, th1=2.5, th2=3.5, pool="SumPool2d"):
    """Conv2d -> IF -> SumPool2d -> Flatten -> Affine -> IF, as sinabs' to_nir writes it."""
    pool_node = getattr(nir, pool)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                   padding=np.array([0, 0]))
    nodes = {
        "input": nir.Input(input_type=np.array([1, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=w1, stride=1, padding=1, dilation=1, groups=1,
                           bias=np.zeros(w1.shape[0])),
        "spk1": nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.full((4, 8, 8), th1)),
        "pool": pool_node,
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=w2, bias=np.zeros(10)),
        "spk2": nir.IF(r=np.ones(10), v_threshold=np.full(10, th2)),
        "output": nir.Output(output_type=np.array([10])),
    }
    edges = [("input", "conv"), ("conv", "spk1"), ("spk1", "pool"), ("pool", "flat"), ("flat", "fc"),
             ("fc", "spk2"), ("spk2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _if_reference(x, w1, w2, th1, th2):
    """The graph's meaning, step by step in torch: IF v += r W x; spike v > th; v <- 0."""
    n, t_steps = x.shape[:2]
    xt = torch.from_numpy(x.astype(np.float64)).reshape(n, t_steps, 1, 8, 8)
    v1, v2 = torch.zeros(n, 4, 8, 8, dtype=torch.float64), torch.zeros(n, 10, dtype=torch.float64)
    out1, out2 = [], []
    for t in range(t_steps):
        v1 = v1 + F.conv2d(xt[:, t], torch.from_numpy(w1), padding=1)
        s1 = v1 > th1
        v1[s1] = 0
        pooled = F.avg_pool2d(s1.double(), 2) * 4
        v2 = v2 + pooled.flatten(1) @ torch.from_numpy(w2).T
        s2 = v2 > th2
        v2[s2] = 0
        out1.append(s1.reshape(n, -1))
        out2.append(s2)
    return [torch.stack(out1, 1).numpy(), torch.stack(out2, 1).numpy()]


def test_sinabs_style_conv_graph_imports_exactly_and_lava_equals_emulator(tmp_path, cli, lava_equals_emulator):
    rng = np.random.default_rng(0)
    w1 = rng.integers(-2, 4, size=(4, 1, 3, 3)).astype(np.float64)
    w2 = rng.integers(-2, 3, size=(10, 64)).astype(np.float64)
    g = _sinabs_style_conv(w1, w2)
    graph = nir_import.from_graph(g, dataset="digits", steps=8)
    assert [l.kind for l in graph.layers] == ["conv", "dense"]
    assert graph.layers[1].weight.shape == (10, 256)          # pooling fused: 4*8*8 inputs
    assert [(l.i_decay, l.v_decay) for l in graph.layers] == [(4096, 0), (4096, 0)]
    x = data.encode(data.load("digits").test.x[:30], 8)
    want = _if_reference(x, w1, w2, 2.5, 3.5)
    got = emulator.run(graph, x, integer=False)
    for w, g_ in zip(want, got):           # integer weights: every sum exact
        np.testing.assert_array_equal(g_, w)
    assert int(want[0].sum()) > 100 and int(want[1].sum()) > 10
    # deploy: write the graph as a file, export, then Lava == emulator on a few samples
    nir.write(str(tmp_path / "conv.nir"), g)
    build.export(tmp_path / "conv.nir", "loihi", tmp_path / "b", calib_samples=64, progress=False,
                 dataset="digits", steps=8)
    q, m = build.load(tmp_path / "b")
    assert m["layers"][0]["kind"] == "conv" and m["layers"][0]["in_shape"] == [1, 8, 8]
    xs, _ = build.eval_inputs(q, "digits", 3)
    em = lava_equals_emulator(tmp_path / "b", q, xs)
    assert int(em[0].sum()) > 20 and int(em[1].sum()) > 0
    # counters of a conv layer: every spike times the windows that hold it (Lava computes all taps)
    from ahsar_deploy.energy_report import count
    c = count(q, xs, em)
    assert c[0]["synaptic_ops"] == q.layers[0].synaptic_ops(xs)
    assert c[1]["synaptic_ops"] == int(em[0].sum()) * 10
    r = cli("run", tmp_path / "b", "--backend", "emulator", "--samples", "5", "-q")
    assert r.returncode == 0, r.stderr
    r = cli("energy", tmp_path / "b", "--samples", "5", "--backend", "emulator", "-q", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)      # conv priced like dense: counters x Loihi's energy per operation
    l0 = rep["layers"][0]
    assert l0["energy_j"]["synaptic_op"] == pytest.approx(l0["synaptic_ops"] * 23.6e-12 / 5, rel=1e-12)
    # conv 3x3, padding 1 on 8x8: taps on the input per axis 2 + 6 x 3 + 2 = 22, so 4 channels
    # x 22 x 22 (NeuroBench's all-ones input leaves the padding 0); fc: 10 x 256 (pool fused)
    assert rep["neurobench"]["SynapticOperations"]["Dense"] == (4 * 22 * 22 + 10 * 256) * 8


def test_snntorch_style_lif_maps_beta_to_decay():
    # snnTorch writes Leaky(beta) as LIF(tau = dt/(1-beta), r = tau/dt) with dt = 1e-4
    dt, beta = 1e-4, 0.875
    tau = dt / (1 - beta)
    w = np.random.default_rng(1).normal(size=(5, 64))
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([64])), "fc": nir.Linear(weight=w),
        "lif": nir.LIF(tau=np.full(5, tau), r=np.full(5, tau / dt), v_leak=np.zeros(5),
                       v_threshold=np.full(5, 1.0)),
        "output": nir.Output(output_type=np.array([5]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    graph = nir_import.from_graph(g, dataset="digits", steps=8, dt_s=dt)
    l = graph.layers[0]
    assert (l.i_decay, l.v_decay) == (4096, 512)               # v = beta v + W x
    np.testing.assert_allclose(l.weight, w, rtol=1e-12)


def _mutations():
    rng = np.random.default_rng(0)
    w1 = rng.integers(-2, 4, size=(4, 1, 3, 3)).astype(np.float64)
    w2 = rng.integers(-2, 3, size=(10, 64)).astype(np.float64)

    def base():
        return _sinabs_style_conv(w1.copy(), w2.copy())

    def nan_weight(g):
        g.nodes["fc"].weight[0, 0] = np.nan

    def inf_threshold(g):
        g.nodes["spk2"].v_threshold[3] = np.inf

    def wrong_shape(g):
        g.nodes["fc"].weight = np.zeros((10, 63))

    def li_node(g):
        g.nodes["spk2"] = nir.LI(tau=np.ones(10), r=np.ones(10), v_leak=np.zeros(10))

    def branch(g):
        g.edges.append(("spk1", "output"))

    def bias(g):   # an Affine bias into an IF now maps onto Loihi's bias (tests/test_recurrent.py); a conv's does not
        g.nodes["conv"].bias = np.ones(4)

    def pool_stride(g):
        g.nodes["pool"].stride = np.array([1, 1])

    def strings(g):
        g.nodes["fc"].weight = np.array([["a"] * 64] * 10)

    def negative_threshold(g):
        g.nodes["spk1"].v_threshold[:] = -1.0

    def groups(g):
        g.nodes["conv"].groups = 2

    def per_pixel_threshold(g):
        g.nodes["spk1"].v_threshold[0, 0, 0] = 9.0

    def huge_stride(g):
        g.nodes["conv"].stride = (1e30, 1)

    return base, [
        (nan_weight, ModelFileError, r"node 'fc' \(Affine\): field 'weight' contains NaN"),
        (inf_threshold, ModelFileError, r"node 'spk2' \(IF\): field 'v_threshold' contains Inf"),
        (wrong_shape, ModelFileError, r"node 'fc' \(Affine\): field 'weight' has shape \(10, 63\), expected \(n_out, 64\)"),
        (li_node, UnsupportedLayerError, r"node 'spk2' \(LI\): a leaky integrator emits no spikes"),
        (branch, UnsupportedLayerError, r"node 'spk1' has 1 inputs and 2 outputs"),
        (bias, UnsupportedLayerError, r"node 'conv' \(Conv2d\): non-zero bias"),
        (pool_stride, UnsupportedLayerError, r"node 'pool' \(SumPool2d\): pooling kernel \(2, 2\), stride \(1, 1\)"),
        (strings, ModelFileError, r"node 'fc' \(Affine\): field 'weight' has dtype <U1"),
        (negative_threshold, UnsupportedLayerError, r"node 'spk1' \(IF\): field 'v_threshold' must be > 0"),
        (groups, UnsupportedLayerError, r"node 'conv' \(Conv2d\): groups=2"),
        (per_pixel_threshold, UnsupportedLayerError, r"node 'spk1' \(IF\): field 'v_threshold' differs within an output channel"),
        (huge_stride, ModelFileError, r"node 'conv' \(Conv2d\): field 'stride'"),
    ]


@pytest.mark.parametrize("case", range(len(_mutations()[1])))
def test_malformed_graphs_name_node_and_field(case):
    base, cases = _mutations()
    mutate, err, pattern = cases[case]
    g = base()
    mutate(g)
    with pytest.raises(err, match=pattern) as e:
        nir_import.from_graph(g, dataset="digits", steps=8)
    assert "\n" not in str(e.value)


def test_bad_files_are_one_line_errors(tmp_path, cli):
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 4)
    with pytest.raises(ModelFileError, match="not a readable NIR file"):
        nir_import.to_graph(junk, dataset="digits", steps=8)
    g = _sinabs_style_conv(np.ones((4, 1, 3, 3)), np.ones((10, 64)))
    nir.write(str(tmp_path / "ok.nir"), g)
    with pytest.raises(ModelFileError, match="pass --data and --steps"):
        nir_import.to_graph(tmp_path / "ok.nir")
    # input size must match the dataset: digits has 64 features, this graph takes 100
    g.nodes["input"] = nir.Input(input_type=np.array([1, 10, 10]))
    g.nodes["conv"].input_shape = (10, 10)
    nir.write(str(tmp_path / "big.nir"), g)
    with pytest.raises(DeployError):
        build.export(tmp_path / "big.nir", "loihi", tmp_path / "b", dataset="digits", steps=8, progress=False)
    assert not (tmp_path / "b").exists()
    r = cli("export", tmp_path / "ok.nir", "--target", "loihi", "-o", tmp_path / "c", "-q")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--data and --steps" in r.stderr


def test_sinabs_to_nir_graph_imports():
    """A graph written by sinabs.to_nir itself (sinabs installed without its samna pin)."""
    sinabs = pytest.importorskip("sinabs")
    import sinabs.layers as sl
    rng = np.random.default_rng(0)
    w1 = rng.integers(-2, 4, size=(4, 1, 3, 3)).astype(np.float32)
    w2 = rng.integers(-2, 3, size=(10, 64)).astype(np.float32)
    conv, fc = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w1))
        fc.weight.copy_(torch.from_numpy(w2))
    net = torch.nn.Sequential(conv, sl.IAFSqueeze(batch_size=1, spike_threshold=2.5), sl.SumPool2d(2),
                              torch.nn.Flatten(), fc, sl.IAFSqueeze(batch_size=1, spike_threshold=3.5))
    g = sinabs.to_nir(net, torch.zeros(1, 1, 8, 8))
    assert [type(g.nodes[k]).__name__ for k in ("0", "1", "2", "3", "4", "5")] == \
        ["Conv2d", "IF", "SumPool2d", "Flatten", "Affine", "IF"]
    graph = nir_import.from_graph(g, dataset="digits", steps=8)
    x = data.encode(data.load("digits").test.x[:30], 8)
    want = _if_reference(x, w1.astype(np.float64), w2.astype(np.float64), 2.5, 3.5)
    for w, got in zip(want, emulator.run(graph, x, integer=False)):
        np.testing.assert_array_equal(got, w)      # NIR's IF semantics (reset to v_reset = 0)


def test_snntorch_export_to_nir_file_imports(tmp_path):
    """A .nir file written by snnTorch's export_to_nir (Leaky with per-neuron beta, dt 1e-4)."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10, bias=False)
            self.lif = snn.Leaky(beta=torch.full((10,), 0.875), threshold=torch.ones(10), init_hidden=True)

        def forward(self, x):
            return self.lif(self.fc(x))

    torch.manual_seed(0)
    net = Net()
    g = export_to_nir(net, torch.zeros(64))
    g.nodes["fc"].bias = np.zeros(10)       # snnTorch writes an Affine; a zero bias deploys
    nir.write(str(tmp_path / "snn.nir"), g)
    graph = nir_import.to_graph(tmp_path / "snn.nir", dataset="digits", steps=8, dt_s=1e-4)
    l = graph.layers[0]
    assert (l.i_decay, l.v_decay) == (4096, 512)    # v = 0.875 v + W x: gain 1
    np.testing.assert_allclose(l.weight, net.fc.weight.detach().double().numpy(), rtol=1e-6)


def test_cli_inspect_nir(tmp_path, cli):
    g = _sinabs_style_conv(np.ones((4, 1, 3, 3)), np.ones((10, 64)))
    nir.write(str(tmp_path / "g.nir"), g)
    r = cli("inspect", tmp_path / "g.nir", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [l["kind"] for l in d["layers"]] == ["conv", "dense"]
    assert d["layers"][1]["n_in"] == 256 and d["layers"][1]["pools_fused"] == [[2, "sum"]]
    assert d["layers"][0]["out_shape"] == [4, 8, 8] and d["layers"][0]["neuron"] == "IF"
    g.nodes["spk2"] = nir.LI(tau=np.ones(10), r=np.ones(10), v_leak=np.zeros(10))
    nir.write(str(tmp_path / "li.nir"), g)
    r = cli("inspect", tmp_path / "li.nir")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "node 'spk2' (LI)" in r.stderr


def test_own_graph_with_bad_metadata_is_a_one_line_error(small_build, tmp_path, cli):
    """A model.nir claiming to come from ahsar-deploy, without `steps` or with junk in it:
    exit 1 and one line (was exit 2, an internal error)."""
    g = nir.read(str(small_build / "model.nir"))
    del g.metadata["steps"]
    nir.write(str(tmp_path / "nosteps.nir"), g)
    r = cli("export", tmp_path / "nosteps.nir", "-o", tmp_path / "b1", "-q")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--data and --steps" in r.stderr, r.stderr
    g.metadata["steps"] = "many"
    nir.write(str(tmp_path / "junk.nir"), g)
    r = cli("export", tmp_path / "junk.nir", "-o", tmp_path / "b2", "-q")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "metadata 'steps' is 'many', not a valid int" in r.stderr
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()
