"""The time step a NIR graph was written for, and snnTorch's reset.

snnTorch's export_to_nir (snntorch/export_nir.py) writes Leaky(beta) as LIF(tau = dt/(1-beta),
r = tau/dt) and Synaptic(alpha, beta) as CubaLIF(tau_syn = dt/(1-alpha), tau_mem = dt/(1-beta),
r = tau_mem/dt, w_in = tau_syn/dt) with dt = 1e-4 s hard-coded, and v_reset = 0 although its
neurons default to reset_mechanism="subtract". norse 1.1's to_nir (norse/torch/utils/export_nir.py)
writes tau = dt_w / tau_inv with to_nir's dt_w (default 1e-3 s), r = 1, and records dt_w nowhere.

Graphs here are written by those libraries' own functions (snnTorch and norse are installed),
or built with nir's classes the way they write them.
"""
import logging

import nir
import numpy as np
import pytest
import torch

from ahsar_deploy.errors import ModelFileError
from ahsar_deploy.ir import DeployGraph, Layer
from exporters import nir as nir_exporter
from exporters import nir_import


def _snntorch_file(path, synaptic=False, beta=0.95, alpha=0.9):
    """A 64-32-10 snnTorch network (Leaky, or Synaptic then Leaky) written by export_to_nir."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 32, bias=False)
            self.lif1 = (snn.Synaptic(alpha=torch.full((32,), alpha), beta=torch.full((32,), beta),
                                      threshold=torch.ones(32), init_hidden=True) if synaptic else
                         snn.Leaky(beta=torch.full((32,), beta), threshold=torch.ones(32), init_hidden=True))
            self.fc2 = torch.nn.Linear(32, 10, bias=False)
            self.lif2 = snn.Leaky(beta=torch.full((10,), beta), threshold=torch.ones(10), init_hidden=True)

        def forward(self, x):
            return self.lif2(self.fc2(self.lif1(self.fc1(x))))

    torch.manual_seed(0)
    net = Net()
    g = export_to_nir(net, torch.zeros(64))
    assert isinstance(g.nodes["lif2"], nir.LIF) and g.nodes["lif2"].r.dtype == np.float32
    nir.write(str(path), g)
    return net


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "exporters.nir_import"]


def test_snntorch_leaky_graph_deploys_at_the_dt_it_was_written_for(tmp_path):
    """Was: no --dt -> dt 1 ms, v_decay 2048 and weights x10 (gain (dt/tau) r = dt/1e-4)."""
    net = _snntorch_file(tmp_path / "snn.nir")
    graph = nir_import.to_graph(tmp_path / "snn.nir", dataset="digits", steps=8)
    assert [(l.i_decay, l.v_decay) for l in graph.layers] == [(4096, 205), (4096, 205)]   # 4096 * 0.05
    imp = graph.notes["import"]
    assert imp["dt_s"] == 1e-4 and imp["dt_from"].startswith("inferred from the graph: dt = 0.0001 s")
    assert "node 'lif1' (LIF): r = tau/dt" in imp["dt_from"]
    for l, fc in zip(graph.layers, (net.fc1, net.fc2)):            # v = beta v + W x: gain 1
        np.testing.assert_allclose(l.weight, fc.weight.detach().double().numpy(), rtol=1e-6)
    d = nir_import.describe(tmp_path / "snn.nir")                  # what `ahsar inspect` shows
    assert d["dt_s"] == 1e-4 and [l["v_decay"] for l in d["layers"]] == [205, 205]


def test_snntorch_synaptic_graph_infers_dt_from_r_and_w_in(tmp_path):
    net = _snntorch_file(tmp_path / "syn.nir", synaptic=True)
    graph = nir_import.to_graph(tmp_path / "syn.nir", dataset="digits", steps=8)
    assert graph.notes["import"]["dt_s"] == 1e-4
    assert [(l.i_decay, l.v_decay) for l in graph.layers] == [(410, 205), (4096, 205)]  # 4096 * 0.1, 0.05
    np.testing.assert_allclose(graph.layers[0].weight, net.fc1.weight.detach().double().numpy(), rtol=1e-6)


def test_dt_that_disagrees_with_the_graph_is_refused_in_one_line(tmp_path):
    _snntorch_file(tmp_path / "snn.nir")
    for call in (lambda: nir_import.to_graph(tmp_path / "snn.nir", dataset="digits", steps=8, dt_s=1e-3),
                 lambda: nir_import.describe(tmp_path / "snn.nir", dt_s=1e-3)):
        with pytest.raises(ModelFileError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "node 'lif1' (LIF)" in msg
        assert "written for dt = 0.0001 s" in msg and "dt = 0.001 s was given" in msg
        assert "pass --dt 0.0001 or omit --dt" in msg and "snnTorch" in msg
    graph = nir_import.to_graph(tmp_path / "snn.nir", dataset="digits", steps=8, dt_s=1e-4)   # agrees
    assert graph.notes["import"]["dt_from"].startswith("given")


def test_snntorch_graph_warns_that_it_deploys_with_reset_to_zero(tmp_path, caplog):
    _snntorch_file(tmp_path / "snn.nir")
    with caplog.at_level(logging.WARNING, logger="exporters.nir_import"):
        graph = nir_import.to_graph(tmp_path / "snn.nir", dataset="digits", steps=8)
    warned = _warnings(caplog)
    assert len(warned) == 1, warned
    w = warned[0]
    assert w.startswith(f"warning: {tmp_path / 'snn.nir'}: ")
    assert "reset to zero" in w and 'reset_mechanism="subtract"' in w and 'train with reset_mechanism="zero"' in w
    assert graph.notes["import"]["notes"] == [w.split(": ", 2)[2]]
    # the user says the network resets to zero: no warning, so --strict can deploy it
    g = nir.read(str(tmp_path / "snn.nir"))
    g.metadata["reset"] = "zero"
    nir.write(str(tmp_path / "zero.nir"), g)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exporters.nir_import"):
        graph = nir_import.to_graph(tmp_path / "zero.nir", dataset="digits", steps=8)
    assert _warnings(caplog) == [] and graph.notes["import"]["notes"] == []
    assert graph.notes["import"]["dt_from"] == nir_import.to_graph(tmp_path / "snn.nir", "digits", 8).notes["import"]["dt_from"]


def _lif_chain(*layers, n_in=64):
    """Input -> (Linear -> LIF(tau, r)) per (tau, r) in layers -> Output."""
    rng = np.random.default_rng(0)
    nodes, edges, prev, n = {"input": nir.Input(input_type=np.array([n_in]))}, [], "input", n_in
    for i, (tau, r) in enumerate(layers):
        m = 10
        nodes[f"fc{i}"] = nir.Linear(weight=rng.normal(size=(m, n)))
        nodes[f"lif{i}"] = nir.LIF(tau=np.full(m, tau), r=np.full(m, r), v_leak=np.zeros(m), v_threshold=np.ones(m))
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev, n = f"lif{i}", m
    nodes["output"] = nir.Output(output_type=np.array([n]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize("layers,dt,source", [
    (((5e-3, 1.0),), 1e-3, "default 0.001 s"),                        # r = 1: no time step shown
    (((5e-3, 5.0),), 1e-3, "inferred from the graph: dt = 0.001 s"),    # r = tau/dt at 1 ms: not snnTorch
    (((2e-3, 20.0), (5e-3, 5.0)), 1e-3, "default 0.001 s"),            # r = tau/1e-4 and tau/1e-3: r is a gain
], ids=["r1", "r-tau-over-1ms", "r-inconsistent"])
def test_other_graphs_keep_the_default_or_their_own_dt_and_no_reset_warning(layers, dt, source, caplog):
    g = _lif_chain(*layers)
    with caplog.at_level(logging.WARNING, logger="exporters.nir_import"):
        graph = nir_import.from_graph(g, dataset="digits", steps=8)
    imp = graph.notes["import"]
    assert imp["dt_s"] == dt and imp["dt_from"].startswith(source) and imp["notes"] == []
    assert _warnings(caplog) == []
    if source.startswith("default"):       # nothing to contradict: any dt deploys
        assert nir_import.from_graph(g, dataset="digits", steps=8, dt_s=1e-4).notes["import"]["dt_s"] == 1e-4


def test_own_model_nir_shows_its_dt_exactly(tmp_path):
    """exporters/nir.py writes LI(tau, r = tau/dt) at dt = 2**-10 s: inferred exactly, equal
    to the metadata; a different dt is refused."""
    rng = np.random.default_rng(0)
    layer = Layer(name="if0", weight=2 * rng.integers(-20, 40, size=(10, 64)), threshold=np.ones(10),
                  i_decay=1024, v_decay=0, vth=300)
    g = DeployGraph(layers=(layer,), n_inputs=64, steps=16, dataset="random", encoding="rate",
                    method="baseline", source_sha256="", target="loihi")
    nir_exporter.write(g, tmp_path / "model.nir")
    from_meta = nir_import.to_graph(tmp_path / "model.nir")
    inferred = nir_import.from_graph(nir.read(str(tmp_path / "model.nir")), dataset="random", steps=16)
    assert from_meta.notes["import"]["dt_s"] == inferred.notes["import"]["dt_s"] == 2.0 ** -10
    assert inferred.notes["import"]["dt_from"].startswith("inferred")
    assert (inferred.layers[0].i_decay, inferred.layers[0].v_decay) == (1024, 0)
    np.testing.assert_array_equal(inferred.layers[0].weight, from_meta.layers[0].weight)
    with pytest.raises(ModelFileError, match=r"node 'cur0' \(LI\): r = tau/dt: the graph was written for "
                                             r"dt = 0\.0009765625 s, but dt = 0\.001 s"):
        nir_import.to_graph(tmp_path / "model.nir", dt_s=1e-3)


def _norse_graph(cell, dt=None):
    """64-32-10, tau_mem 2.5 ms, tau_syn 5 ms, written by norse's to_nir (its default dt, or dt)."""
    import norse.torch as nt
    torch.manual_seed(0)

    def params(n):
        common = {"tau_mem_inv": torch.full((n,), 400.0), "v_th": torch.full((n,), 0.5), "v_leak": torch.zeros(n)}
        if cell == "LIFBoxCell":
            return nt.LIFBoxParameters(**common)
        return nt.LIFParameters(tau_syn_inv=torch.full((n,), 200.0), **common)
    c = getattr(nt, cell)
    model = nt.SequentialState(torch.nn.Linear(64, 32, bias=False), c(params(32)),
                               torch.nn.Linear(32, 10, bias=False), c(params(10)))
    return nt.to_nir(model, torch.zeros(64)) if dt is None else nt.to_nir(model, torch.zeros(64), dt=dt)


@pytest.mark.parametrize("cell,i_decay", [("LIFCell", 82), ("LIFBoxCell", 4096)])
def test_norse_tau_is_read_with_to_nirs_dt_not_the_deploy_dt(cell, i_decay, caplog):
    """Was: --nir-tau norse --dt 1e-4 read tau as written/1e-4 -> v_decay 16; tau_mem 2.5 ms at
    dt 0.1 ms is 4096 * 0.04 = 164 (tau_syn 5 ms: 82)."""
    g = _norse_graph(cell)
    assert float(np.asarray(g.nodes["1"].r).min()) == 1.0 and not g.metadata    # nothing records dt
    with caplog.at_level(logging.WARNING, logger="exporters.nir_import"):
        graph = nir_import.from_graph(g, dataset="digits", steps=8, dt_s=1e-4, tau_convention="norse")
    assert [(l.i_decay, l.v_decay) for l in graph.layers] == [(i_decay, 164)] * 2
    warned = _warnings(caplog)
    assert len(warned) == 1 and "written / 0.001 s" in warned[0] and "norse:0.0001" in warned[0]
    # no --dt: deploys at to_nir's dt, and says where that came from
    graph = nir_import.from_graph(g, dataset="digits", steps=8, tau_convention="norse")
    assert graph.notes["import"]["dt_s"] == 1e-3 and "to_nir's default dt 0.001 s" in graph.notes["import"]["dt_from"]
    assert graph.layers[0].v_decay == 1638


def test_norse_graph_written_at_another_dt_takes_norse_dt(caplog):
    g = _norse_graph("LIFCell", dt=1e-4)                 # tau written as 1e-4 * tau
    with caplog.at_level(logging.WARNING, logger="exporters.nir_import"):
        graph = nir_import.from_graph(g, dataset="digits", steps=8, tau_convention="norse:1e-4")
    assert graph.notes["import"]["dt_s"] == 1e-4 and _warnings(caplog) == []
    assert [(l.i_decay, l.v_decay) for l in graph.layers] == [(82, 164)] * 2
    with pytest.raises(ModelFileError, match=r"tau convention 'norse:soon': choose one of seconds, norse"):
        nir_import.from_graph(g, dataset="digits", steps=8, tau_convention="norse:soon")


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_snntorch_zero_reset_runs_spike_for_spike_subtract_does_not(reset):
    """The warning's fix is right: a snnTorch Leaky net with reset_mechanism="zero" (default
    reset_delay=True: v = beta (1 - s[t-1]) v + W x) equals the imported graph, run at the dt
    inferred from it, spike for spike; with the default "subtract" it does not."""
    from ahsar_deploy import data, emulator
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(64, 32, bias=False), torch.nn.Linear(32, 10, bias=False)
            kw = {"init_hidden": True, "reset_mechanism": reset}
            self.lif1 = snn.Leaky(beta=torch.full((32,), 0.875), threshold=torch.ones(32), **kw)
            self.lif2 = snn.Leaky(beta=torch.full((10,), 0.875), threshold=torch.ones(10), **kw)

        def forward(self, x):
            s1 = self.lif1(self.fc1(x)).to(x.dtype)
            return s1, self.lif2(self.fc2(s1))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.fc1.weight.mul_(4)
        net.fc2.weight.mul_(6)
    graph = nir_import.from_graph(export_to_nir(net, torch.zeros(64)), dataset="digits", steps=8)
    x = data.encode(data.load("digits").test.x[:40], 8)
    net = net.double()                       # float64 on both sides: no rounding differences
    out = [[], []]
    with torch.no_grad():
        for t in range(8):
            for o, s in zip(out, net(torch.from_numpy(x[:, t].astype(np.float64)))):
                o.append(s.numpy().astype(bool))
    want = [np.stack(o, 1) for o in out]
    got = emulator.run(graph, x, integer=False)
    assert int(want[0].sum()) > 1000 and int(want[1].sum()) > 300
    differ = [int((w != g.astype(bool)).sum()) for w, g in zip(want, got)]
    assert (differ == [0, 0]) == (reset == "zero"), differ
