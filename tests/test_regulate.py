"""AHSAR attached to users' own snnTorch / norse networks (ahsar_deploy/regulate.py)."""
import math

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ahsar_deploy import data
from ahsar_deploy.regulate import annotate_nir, attach
from ahsar_deploy.errors import AttachError, ModelFileError
from ahsar_deploy.regulator import AHSAR
from exporters import nir_import

snn = pytest.importorskip("snntorch")
from snntorch import utils as snn_utils  # noqa: E402
BAND = (0.05, 0.25)
STEPS = 8


def _leaky(n, th, learn=False, out=False):
    return snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.full((n,), th), reset_mechanism="zero",
                     init_hidden=True, learn_threshold=learn, output=out)


def _snntorch_net(th=1.0, learn=False, seed=0):
    """64-32-32-10 Leaky (beta 0.9, reset to zero), Linear without bias; readout Leaky threshold 1."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False), _leaky(32, th, learn),
                               torch.nn.Linear(32, 32, bias=False), _leaky(32, th, learn),
                               torch.nn.Linear(32, 10, bias=False), _leaky(10, 1.0, out=True))


def _snntorch_run(net, x):
    """The usual snnTorch loop: x (B, T, 64) -> output spikes (B, T, 10), one call per step."""
    snn_utils.reset(net)
    return torch.stack([net(x[:, t])[0] for t in range(x.shape[1])], 1)


def _norse_net(th, seed=0):
    """64-32-32-10 norse LIFBoxCell (v <- 0.9 v + 0.1 I at dt 1 ms), readout v_th 0.1."""
    import norse.torch as nt

    def cell(n, v_th):
        return nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((n,), 100.0), v_th=torch.full((n,), v_th),
                                                 v_leak=torch.zeros(n)))
    torch.manual_seed(seed)
    return nt.SequentialState(torch.nn.Linear(64, 32, bias=False), cell(32, th),
                              torch.nn.Linear(32, 32, bias=False), cell(32, th),
                              torch.nn.Linear(32, 10, bias=False), cell(10, 0.1))


def _norse_run(net, x):
    state, out = None, []
    for t in range(x.shape[1]):
        s, state = net(x[:, t], state)
        out.append(s)
    return torch.stack(out, 1)


def _digits():
    ds = data.load("digits")
    enc = [(torch.from_numpy(data.encode(s.x, STEPS)).float(), torch.from_numpy(s.y)) for s in (ds.train, ds.val)]
    return enc


def _train(net, run, epochs, regulate, batch=32, seed=0):
    """A user's plain training loop on digits, with or without the attached AHSAR; returns
    the hidden layers' validation rates (counted by the test's own hooks) and the Attached."""
    (x_tr, y_tr), (x_va, y_va) = _digits()
    att = attach(net) if regulate else None
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y_tr), generator=g)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(run(net, x_tr[idx]).sum(1), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if att:
                att.step()
        if att:
            val_loss = att.measure(lambda: float(F.cross_entropy(run(net, x_va).sum(1), y_va)))
            att.end_epoch(float(np.mean(att.rates())), val_loss, epoch + 1 < epochs)
    hidden = [net[1], net[3]]
    counts = {id(m): [0, 0] for m in hidden}

    def hook(m, args, out):
        s = out[0] if isinstance(out, tuple) else out
        counts[id(m)][0] += int((s != 0).sum())
        counts[id(m)][1] += s.numel()
    handles = [m.register_forward_hook(hook) for m in hidden]
    net.eval()
    with torch.no_grad():
        run(net, x_va)
    for h in handles:
        h.remove()
    rates = [counts[id(m)][0] / counts[id(m)][1] for m in hidden]
    if att:
        assert att.rates() == pytest.approx(rates, abs=0)   # the eval pass att counted too
    return rates, att


# (a) same numbers as the project's own AHSAR on the same spike rates ---------------------------

def test_attached_snntorch_matches_bare_ahsar_exactly():
    net = _snntorch_net()
    base = [net[1].threshold.clone(), net[3].threshold.clone()]
    readout = net[5].threshold.clone()
    att = attach(net)
    assert att.names == ["1", "3"]                               # the readout is left alone
    recorded = {1: [], 3: []}
    for i in (1, 3):
        net[i].register_forward_hook(lambda m, a, o, i=i: recorded[i].append(o.detach()))
    bare = AHSAR(2)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(1)
    for batch in range(6):
        x = (torch.rand(16, STEPS, 64, generator=gen) < 0.3 + 0.1 * batch).float()
        for v in recorded.values():
            v.clear()
        net.train()
        loss = _snntorch_run(net, x).sum(1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        want = [float(torch.stack(recorded[i], 1).double().mean()) for i in (1, 3)]   # over (B, T, N)
        assert att.step() == want
        bare.observe(want)
        assert torch.equal(att.regulator.h, bare.h) and torch.equal(att.regulator.log_s, bare.log_s)
        for l, i in enumerate((1, 3)):
            assert torch.equal(net[i].threshold, base[l] * bare.scales()[l].float())
    assert not torch.equal(bare.log_s, torch.zeros(2))             # the rates moved the scales
    for loss in (1.0, 1.0):                                          # first epoch, then stalled
        att.end_epoch(0.4, loss, True)
        bare.end_epoch(0.4, loss, True)
    assert float(bare.log_g) > 0 and torch.equal(att.regulator.log_g, bare.log_g)
    assert att.scales() == [float(s) for s in bare.scales()]
    assert torch.equal(net[1].threshold, base[0] * bare.scales()[0].float())
    assert torch.equal(net[5].threshold, readout)


@pytest.mark.parametrize("cls", ["LIFCell", "LIF"])
def test_attached_norse_matches_bare_ahsar_and_the_plain_model(cls):
    """norse cell (one call per step) and sequence module (one call per sample sequence)."""
    nt = pytest.importorskip("norse.torch")

    def net():
        def p(n):
            return nt.LIFParameters(tau_mem_inv=torch.full((n,), 100.0), tau_syn_inv=torch.full((n,), 200.0),
                                    v_th=torch.full((n,), 0.05), v_leak=torch.tensor(0.0))  # LIF: scalar v_leak
        torch.manual_seed(0)
        c = getattr(nt, cls)
        return nt.SequentialState(torch.nn.Linear(64, 32, bias=False), c(p(32)),
                                  torch.nn.Linear(32, 10, bias=False), c(p(10)))

    def run(m, x):
        return m(x.transpose(0, 1))[0].transpose(0, 1) if cls == "LIF" else _norse_run(m, x)
    model, plain = net(), net()
    att = attach(model)
    assert att.names == ["1"]
    rec = []
    model[1].register_forward_hook(lambda m, a, o: rec.append(o[0].detach()))
    bare = AHSAR(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(8)
    for batch in range(4):
        x = (torch.rand(16, STEPS, 64, generator=gen) < 0.2 + 0.15 * batch).float()
        rec.clear()
        loss = run(model, x).sum(1).pow(2).mean()
        if batch == 0:                                               # scale 1: the plain model's numbers
            loss0 = run(plain, x).sum(1).pow(2).mean()
            loss0.backward()
            opt.zero_grad()
            loss.backward()
            assert torch.equal(loss, loss0)
            assert all(torch.equal(a.grad, b.grad) for a, b in zip(model.parameters(), plain.parameters()))
        else:
            opt.zero_grad()
            loss.backward()
        opt.step()
        want = [float(torch.cat([r.reshape(-1) for r in rec]).double().mean())]
        assert att.step() == want
        bare.observe(want)
        assert torch.equal(att.regulator.log_s, bare.log_s)
        th = torch.full((32,), 0.05) * bare.scales()[0].float()
        np.testing.assert_array_equal(att.summary()[0].threshold, th.double().numpy())
        att.measure(lambda: run(model, x[:1]))                       # eval: applies, counts apart
        assert torch.equal(model[1].p.v_th, th) and torch.equal(model[3].p.v_th, torch.full((10,), 0.05))
    assert float(bare.log_s[0]) != 0.0


# (b) no parameters, loss and gradients untouched, eval changes nothing ------------------------

def _loss_and_grads(net, x, y):
    net.train()
    net.zero_grad()
    loss = F.cross_entropy(_snntorch_run(net, x).sum(1), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("learn", [False, True])
def test_gradients_bitwise_equal_to_the_plain_model(learn):
    net = _snntorch_net(th=0.5, learn=learn)
    plain = _snntorch_net(th=0.5, learn=learn)    # same seed, same weights (snnTorch's reset misses deep copies)
    params = {id(p) for p in net.parameters()}
    att = attach(net)
    assert {id(p) for p in net.parameters()} == params               # nothing trainable added
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(16, STEPS, 64, generator=gen) < 0.4).float()
    y = torch.randint(0, 10, (16,), generator=gen)
    assert att.scales() == [1.0, 1.0]
    l1, g1 = _loss_and_grads(net, x, y)
    l0, g0 = _loss_and_grads(plain, x, y)
    assert torch.equal(l1, l0) and all(torch.equal(a, b) for a, b in zip(g1, g0))
    for _ in range(3):                                               # regulate: scales move off 1
        _loss_and_grads(net, x, y)
        att.step()
    assert all(s != 1.0 for s in att.scales())
    with torch.no_grad():                                            # plain model, same thresholds
        for i in (1, 3):
            plain[i].threshold.copy_(net[i].threshold)
    l1, g1 = _loss_and_grads(net, x, y)
    l0, g0 = _loss_and_grads(plain, x, y)
    assert torch.equal(l1, l0)
    weights = [i for i, (n, _) in enumerate(plain.named_parameters()) if n.endswith("weight")]
    assert all(torch.equal(g1[i], g0[i]) for i in weights)


def test_eval_mode_changes_nothing_and_step_needs_a_training_forward():
    net = _snntorch_net(th=0.5)
    att = attach(net)
    x = (torch.rand(8, STEPS, 64, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    net.train()
    _snntorch_run(net, x)
    att.step()
    before = ({k: v.clone() for k, v in att.regulator.state_dict().items()},
              [net[i].threshold.clone() for i in (1, 3)])
    out = att.measure(lambda: _snntorch_run(net, x))
    assert net.training and out.shape == (8, STEPS, 10)               # mode restored
    net.eval()
    _snntorch_run(net, x)
    with pytest.raises(AttachError, match=r"ran no training forward.*call step\(\) once per batch"):
        att.step()
    for k, v in att.regulator.state_dict().items():
        assert torch.equal(v, before[0][k]), k
    assert all(torch.equal(net[i].threshold, t) for i, t in zip((1, 3), before[1]))
    assert all(0 <= r <= 1 for r in att.rates())


def test_detach_folds_thresholds_and_removes_hooks():
    net = _snntorch_net(th=0.5)
    att = attach(net)
    x = (torch.rand(8, STEPS, 64, generator=torch.Generator().manual_seed(4)) < 0.5).float()
    for _ in range(3):
        net.train()
        _snntorch_run(net, x)
        att.step()
    regulated = [net[i].threshold.clone() for i in (1, 3)]
    summary = att.detach()
    assert type(net[1]) is snn.Leaky and "1.threshold" in net.state_dict()
    assert [s.name for s in summary] == ["1", "3"] and summary[0].kind == "Leaky"
    for s, t, i in zip(summary, regulated, (1, 3)):
        assert torch.equal(net[i].threshold, t)                      # folded, the value it ran with
        np.testing.assert_array_equal(s.threshold, t.double().numpy())
        assert s.threshold == pytest.approx(0.5 * s.scale, rel=1e-6)
    _snntorch_run(net, x)
    with pytest.raises(AttachError, match="detached"):
        att.step()
    att2 = attach(net)                                               # can be attached again
    assert att2.scales() == [1.0, 1.0] and torch.equal(net[1].threshold, regulated[0])


# (c), (d) regulation on a user's own training loop ------------------------------------------

def test_snntorch_network_trained_in_its_own_loop_ends_inside_the_band():
    """Threshold 0.4: the plain network ends above the band; attached, both hidden layers
    end inside it (validation split, rates counted by the test's own hooks)."""
    plain, _ = _train(_snntorch_net(th=0.4), _snntorch_run, epochs=6, regulate=False)
    rates, att = _train(_snntorch_net(th=0.4), _snntorch_run, epochs=6, regulate=True)
    assert any(r > BAND[1] for r in plain), plain
    assert all(BAND[0] <= r <= BAND[1] for r in rates), rates
    assert all(s > 1 for s in att.scales())                          # too active -> higher threshold


def test_norse_network_trained_in_its_own_loop_ends_inside_the_band():
    pytest.importorskip("norse")
    plain, _ = _train(_norse_net(0.02), _norse_run, epochs=6, regulate=False)
    net = _norse_net(0.02)
    rates, att = _train(net, _norse_run, epochs=6, regulate=True)
    assert any(r > BAND[1] for r in plain), plain
    assert all(BAND[0] <= r <= BAND[1] for r in rates), rates
    s = att.scales()
    att.detach()
    for l, i in enumerate((1, 3)):                                   # folded into p.v_th
        assert torch.equal(net[i].p.v_th, torch.full((32,), 0.02) * torch.tensor(s[l], dtype=torch.float64).float())
    assert torch.equal(net[5].p.v_th, torch.full((10,), 0.1))


# (e) regulated / train_rate through NIR metadata --------------------------------------------

def _short_training(net, run, att, x):
    for _ in range(3):
        net.train()
        run(net, x)
        att.step()
    att.measure(lambda: run(net, x))
    return att.detach()


def test_snntorch_nir_metadata_round_trip(tmp_path):
    from snntorch.export_nir import export_to_nir
    net = _snntorch_net(th=0.5)
    att = attach(net)
    x = (torch.rand(16, STEPS, 64, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    summary = _short_training(net, _snntorch_run, att, x)
    graph = annotate_nir(export_to_nir(net, torch.zeros(64)), att)
    nir.write(str(tmp_path / "snn.nir"), graph)
    g = nir_import.to_graph(tmp_path / "snn.nir", dataset="digits", steps=STEPS)
    assert [l.regulated for l in g.layers] == [True, True, False]
    assert [l.train_rate for l in g.layers] == [s.rate for s in summary] + [None]
    assert all(0 < s.rate < 1 for s in summary)
    for l, s in zip(g.layers, summary):
        np.testing.assert_array_equal(l.threshold, s.threshold)       # the regulated thresholds
    d = nir_import.describe(tmp_path / "snn.nir")
    assert [l["regulated"] for l in d["layers"]] == [True, True, False]


def test_norse_nir_metadata_round_trip(tmp_path):
    nt = pytest.importorskip("norse.torch")
    net = _norse_net(0.05)
    att = attach(net)
    x = (torch.rand(16, STEPS, 64, generator=torch.Generator().manual_seed(6)) < 0.5).float()
    summary = _short_training(net, _norse_run, att, x)
    graph = annotate_nir(nt.to_nir(net, torch.zeros(64)), att)
    nir.write(str(tmp_path / "norse.nir"), graph)
    g = nir_import.to_graph(tmp_path / "norse.nir", dataset="digits", steps=STEPS, tau_convention="norse")
    assert [(l.regulated, l.train_rate) for l in g.layers] == [(True, summary[0].rate), (True, summary[1].rate),
                                                                (False, None)]
    np.testing.assert_allclose(g.layers[0].threshold, summary[0].threshold, rtol=1e-7)


def test_unknown_rate_is_nan_and_bad_metadata_is_refused(tmp_path):
    from snntorch.export_nir import export_to_nir
    net = _snntorch_net()
    att = attach(net)
    att.detach()                                                     # never measured
    graph = annotate_nir(export_to_nir(net, torch.zeros(64)), att)
    assert graph.nodes["1"].metadata["regulated"] == 1 and math.isnan(graph.nodes["1"].metadata["train_rate"])
    nir.write(str(tmp_path / "a.nir"), graph)
    g = nir_import.to_graph(tmp_path / "a.nir", dataset="digits", steps=STEPS)
    assert [(l.regulated, l.train_rate) for l in g.layers][:2] == [(True, None), (True, None)]
    for key, bad in (("train_rate", 1.5), ("regulated", 0.5), ("train_rate", "fast")):
        graph.nodes["1"].metadata = {"regulated": 1, "train_rate": 0.1, key: bad}
        nir.write(str(tmp_path / "b.nir"), graph)
        with pytest.raises(ModelFileError, match=f"node '1' \\(LIF\\): metadata '{key}'") as e:
            nir_import.to_graph(tmp_path / "b.nir", dataset="digits", steps=STEPS)
        assert "\n" not in str(e.value)


# errors: one line, naming what and how to fix ------------------------------------------------

def test_errors_name_the_problem_and_the_fix():
    from snntorch.export_nir import export_to_nir
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    with pytest.raises(AttachError, match=r"no spiking layer found in Sequential.*snntorch.Leaky.*layers="):
        attach(mlp)
    with pytest.raises(AttachError, match=r"'1' \(ReLU\) has no threshold"):
        attach(mlp, layers=[mlp[1]])
    with pytest.raises(AttachError, match=r"layers\[0\] = 'fc' is not a module name"):
        attach(mlp, layers=["fc"])
    one = torch.nn.Sequential(torch.nn.Linear(4, 3), _leaky(3, 1.0))
    with pytest.raises(AttachError, match=r"one spiking layer \('1'\), the readout.*layers="):
        attach(one)
    neg = torch.nn.Sequential(torch.nn.Linear(4, 3), _leaky(3, -1.0), torch.nn.Linear(3, 2), _leaky(2, 1.0))
    with pytest.raises(AttachError, match=r"threshold -1; AHSAR scales thresholds, so they must be > 0"):
        attach(neg)
    net = _snntorch_net()
    att = attach(net)
    with pytest.raises(AttachError, match="already attached"):
        attach(net)
    with pytest.raises(AttachError, match=r"layer\(s\) '1', '3' ran no training forward"):
        att.step()
    with pytest.raises(AttachError, match=r"rates\(\).*measure"):
        att.rates()
    stale = export_to_nir(net, torch.zeros(64))                      # thresholds still at 1
    x = (torch.rand(8, STEPS, 64, generator=torch.Generator().manual_seed(7)) < 0.5).float()
    _short_training(net, _snntorch_run, att, x)
    with pytest.raises(AttachError, match=r"NIR node '1': v_threshold is not the regulated.*after attached.detach"):
        annotate_nir(stale, att)
    fresh = export_to_nir(net, torch.zeros(64))
    with pytest.raises(AttachError, match=r"no node 'lif1' for regulated layer '1'.*node_names="):
        annotate_nir(fresh, att, node_names={"1": "lif1"})
    explicit = attach(net, layers=["1", net[5]])                     # any threshold module, by name or module
    assert explicit.names == ["1", "5"]
