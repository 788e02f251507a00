"""Threshold methods (METHODS.md 2, 3) as plug-ins, alone and with AHSAR; their fold and export."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ahsar_deploy import checkpoint, data, emulator
from ahsar_deploy.passes.fold import fold
from ahsar_deploy.snn import SNN, cnn_specs, split_method
from ahsar_deploy.train import train


def test_split_method():
    assert split_method("ahsar") == ("baseline", True)
    assert split_method("hoyer+ahsar") == ("hoyer", True)
    assert split_method("rouser") == ("rouser", False)
    with pytest.raises(ValueError, match="unknown method"):
        split_method("ahsar+rouser")


@pytest.mark.parametrize("base", ["rouser", "hoyer"])
def test_ahsar_adds_no_parameters(base):
    a, b = SNN([8, 6, 4, 3], method=base + "+ahsar"), SNN([8, 6, 4, 3], method=base)
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]


@pytest.mark.parametrize("base", ["baseline", "rouser", "hoyer"])
def test_weight_gradients_identical_with_ahsar_on_or_off(base):
    """Same effective thresholds -> bitwise identical weight gradients (METHODS.md 1)."""
    torch.manual_seed(0)
    reg = SNN([8, 6, 4, 3], method="ahsar" if base == "baseline" else base + "+ahsar")
    reg.regulator.log_s.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
    with torch.no_grad():
        for layer in reg.layers:
            layer.syn.weight.mul_(3.0)                   # enough spikes in every layer
    plain = SNN([8, 6, 4, 3], method=base)
    plain.load_state_dict({k: v for k, v in reg.state_dict().items() if not k.startswith("regulator")})
    with torch.no_grad():
        for layer, s in zip(plain.layers, reg.scales()):
            layer.theta_base.mul_(s.float() if isinstance(s, torch.Tensor) else s)
    x = (torch.rand(5, 6, 8) < 0.6).float()
    y = torch.tensor([0, 1, 2, 0, 1])
    for m in (reg, plain):
        m.train()
        counts, spikes = m(x)
        (F.cross_entropy(counts, y) + m.hoyer_loss()).backward()
    assert all(int(s.sum()) > 3 for s in spikes)
    for lr, lp in zip(reg.layers, plain.layers):
        assert torch.equal(lr.syn.weight.grad, lp.syn.weight.grad)


def test_rouser_surrogate_by_hand():
    """dS/dV = (1.5/3.75) exp(-|V - theta|/3.75); the threshold gets the negated gradient."""
    m = SNN([1, 1], method="rouser", i_decay=4096, v_decay=4096)
    assert float(m.layers[0].theta_base.detach()) == 1.25
    with torch.no_grad():
        m.layers[0].syn.weight.fill_(2.0)                  # V = 2 at the one step
    counts, _ = m(torch.ones(1, 1, 1))
    counts.sum().backward()
    g = 1.5 / 3.75 * math.exp(-abs(2.0 - 1.25) / 3.75)
    assert float(counts.detach()) == 1.0
    assert float(m.layers[0].theta_base.grad) == pytest.approx(-g, rel=1e-6)
    assert float(m.layers[0].syn.weight.grad) == pytest.approx(g * 1.0, rel=1e-6)   # dV/dW = x = 1


def test_hoyer_extremum_and_running_mean_by_hand():
    """Training: spike where u >= E = sum(u_c^2)/sum(u_c); E_run <- 0.9 E_run + 0.1 E.
    Eval: threshold |v_th| * E_run, frozen."""
    m = SNN([4, 4, 2], method="hoyer", i_decay=4096, v_decay=4096)
    layer = m.layers[0]
    with torch.no_grad():
        layer.syn.weight.copy_(torch.diag(torch.tensor([0.2, 0.5, 0.9, 1.5])))
        layer.v_th.fill_(-1.0)                           # |v_th| is used
    x = torch.ones(1, 1, 4)
    m.train()
    _, spikes = m(x)
    uc = np.array([0.2, 0.5, 0.9, 1.0])
    e = (uc ** 2).sum() / uc.sum()                       # 0.8 (to float32 rounding)
    assert spikes[0][0, 0].tolist() == [0, 0, 1, 1]
    assert float(layer.e_run) == pytest.approx(0.9 + 0.1 * e, rel=1e-6)
    assert float(m.hoyer_loss()) == pytest.approx(1e-8 * uc.sum() ** 2 / (uc ** 2).sum(), rel=1e-5)
    m.eval()
    before = float(layer.e_run)
    m(x)
    assert float(layer.e_run) == before
    assert float(m.thresholds()[0][0]) == pytest.approx(before, rel=1e-6)
    assert float(m.thresholds()[1][0]) == 1.0            # readout: fixed threshold


def test_cnn_shapes_and_thresholds_per_channel():
    m = SNN(method="rouser+ahsar", input_shape=(1, 8, 8),
            specs=cnn_specs((4, 6), kernel=3, padding=1, hidden=(12,), n_classes=10))
    assert m.sizes == [64, 4 * 8 * 8, 6 * 4 * 4, 12, 10]
    assert [tuple(t.shape) for t in m.thresholds()] == [(4,), (6,), (12,), (10,)]
    counts, spikes = m((torch.rand(3, 5, 64) < 0.5).float())
    assert counts.shape == (3, 10) and [s.shape[-1] for s in spikes] == m.sizes[1:]


@pytest.mark.parametrize("method", ["rouser", "hoyer+ahsar"])
def test_fold_exact_for_trained_method(method, tmp_path):
    """Per-neuron (rouser) and Hoyer thresholds of a trained model fold exactly."""
    ckpt = train(data="digits", method=method, hidden=(24,), steps=6, epochs=1, seed=1,
                 train_samples=300, progress=False)
    path = tmp_path / "m.pt"
    checkpoint.save(ckpt, path)
    model = checkpoint.build_model(checkpoint.load(path)).double()
    graph = checkpoint.to_graph(path)
    th = graph.layers[0].threshold
    assert len(np.unique(th)) > (1 if method == "rouser" else 0)
    x = data.encode(data.load("digits").test.x[:80], graph.steps)
    with torch.no_grad():
        _, want = model(torch.from_numpy(x).double())
    got = emulator.run(fold(graph), x, integer=False)
    total = 0
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w.numpy().astype(bool), g)
        total += int(g.sum())
    assert total > 200


METHODS_ = ["baseline", "ahsar", "rouser", "rouser+ahsar", "hoyer", "hoyer+ahsar"]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_every_method_exports_and_runs_on_lava(arch, tmp_path, lava_equals_emulator_many):
    """Each method's checkpoint, MLP and CNN (conv -> sum pool -> conv -> sum pool ->
    dense, per-channel thresholds), goes through ahsar-export and runs on Lava with the
    emulator's spikes (4 digits samples x 6 steps; one Lava worker for all six)."""
    from ahsar_deploy import build
    cases = []
    for method in METHODS_:
        ckpt = train(data="digits", method=method, arch=arch, hidden=(16,) if arch == "mlp" else (),
                     channels=(4, 6), steps=6, epochs=1, seed=0, train_samples=300, progress=False)
        checkpoint.save(ckpt, tmp_path / f"{method}.pt")
        build.export(tmp_path / f"{method}.pt", "loihi", tmp_path / method, calib_samples=64, qat="off",
                     progress=False)
        graph, manifest = build.load(tmp_path / method)
        assert manifest["method"] == method
        x, _ = build.eval_inputs(graph, None, 4)
        cases.append((tmp_path / method, graph, x))
    for method, want in zip(METHODS_, lava_equals_emulator_many(cases)):
        assert sum(int(w.sum()) for w in want) > 0, f"{arch} {method}: no spike at all"


def test_membrane_trace_by_hand():
    """keep_v records v / theta before spike and reset, step by step (benchmarks/robustness.py
    reads it): one neuron, weight 0.6, threshold 1, no decay of u beyond Loihi's registers."""
    net = SNN([1, 1, 1], method="baseline", i_decay=4096, v_decay=0)   # u = W x each step, v integrates
    layer = net.layers[0]
    with torch.no_grad():
        layer.syn.weight.fill_(0.6)
    layer.keep_v = True
    net.eval()
    with torch.no_grad():
        net(torch.ones(1, 4, 1))
    # v: 0.6, 1.2 (spike, reset), 0.6, 1.2 (spike)
    assert [round(float(v), 6) for v in layer.v_trace] == [0.6, 1.2, 0.6, 1.2]
    layer.keep_v = False
    with torch.no_grad():
        net(torch.ones(1, 4, 1))
    assert layer.v_trace is None
