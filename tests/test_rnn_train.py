"""Recurrent CUBA-LIF layers and biases (issue 18, training side): the recurrence and bias
semantics of ir.Layer (u[t] = du u[t-1] + W x[t] + R s[t-1]; v[t] = dv v[t-1] + u[t] + b)
in snn.py, their checkpoint round trip, and training on row-by-row digits."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ahsar_deploy import checkpoint, data, emulator
from ahsar_deploy.errors import ModelFileError, UnsupportedLayerError
from ahsar_deploy.snn import METHODS, SNN, mlp_specs
from ahsar_deploy.train import train


def _rnn(sizes, method="baseline", bias=False, **kw):
    return SNN(method=method, input_shape=(sizes[0],), specs=mlp_specs(sizes, recurrent=True, bias=bias), **kw)


def _reference(layer, x):
    """ir.Layer semantics in numpy float64, written from ir.py's field comments:
    x (N, T, n_in) -> spikes (N, T, n_out) bool."""
    w, th = np.asarray(layer.weight, float), layer.neuron_thresholds()
    r = np.zeros((len(th), len(th))) if layer.recurrent is None else layer.recurrent
    b = np.zeros(len(th)) if layer.bias is None else layer.bias
    du, dv = 1 - layer.i_decay / 4096, 1 - layer.v_decay / 4096
    u = np.zeros((x.shape[0], len(th)))
    v, s = np.zeros_like(u), np.zeros_like(u)
    out = np.zeros((*x.shape[:2], len(th)), dtype=bool)
    for t in range(x.shape[1]):
        u = du * u + x[:, t] @ w.T + s @ r.T
        v = dv * v + u + b
        s = (v > th).astype(float)
        v[s > 0] = 0.0
        out[:, t] = s > 0
    return out


def test_recurrent_layer_shapes_and_parameters():
    """Hidden layers get R (n, n) and, with bias, b (n,); the readout stays feed-forward."""
    m = _rnn([8, 12, 6, 3], method="ahsar", bias=True)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items() if not k.startswith("regulator")}
    assert shapes == {"layers.0.syn.weight": (12, 8), "layers.0.rec.weight": (12, 12), "layers.0.bias": (12,),
                      "layers.0.theta_base": (12,), "layers.1.syn.weight": (6, 12),
                      "layers.1.rec.weight": (6, 6), "layers.1.bias": (6,), "layers.1.theta_base": (6,),
                      "layers.2.syn.weight": (3, 6), "layers.2.bias": (3,), "layers.2.theta_base": (3,)}
    counts, spikes = m((torch.rand(4, 5, 8) < 0.5).float())
    assert counts.shape == (4, 3) and [tuple(s.shape) for s in spikes] == [(4, 5, 12), (4, 5, 6), (4, 5, 3)]
    assert m.regulator.n_layers == 2
    with pytest.raises(ValueError, match="only on dense layers"):
        SNN(input_shape=(1, 8, 8), specs=[{"type": "cuba_lif_conv", "out_channels": 2, "kernel": 3,
                                           "recurrent": True}, {"type": "flatten"},
                                          {"type": "cuba_lif_dense", "n_out": 3}])


def _two_neurons(r00, b1):
    """One recurrent layer of 2 neurons, du = dv = 1/2, theta 1, input weight (1.25, 0),
    R = [[r00, 0], [1, 0]] (neuron 0 excites neuron 1), bias (0, b1); all values dyadic,
    so float32 is exact."""
    m = SNN(method="baseline", i_decay=2048, v_decay=2048, input_shape=(1,),
            specs=[{"type": "cuba_lif_dense", "n_out": 2, "recurrent": True, "bias": True}])
    layer = m.layers[0]
    with torch.no_grad():
        layer.syn.weight.copy_(torch.tensor([[1.25], [0.0]]))
        layer.rec.weight.copy_(torch.tensor([[r00, 0.0], [1.0, 0.0]]))
        layer.bias.copy_(torch.tensor([0.0, b1]))
    x = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 4, 1)
    return m(x)[1][0][0].T.int().tolist()   # (neurons, steps)


def test_recurrence_and_bias_by_hand():
    """Input 1, 1, 0, 0. Neuron 0: t0 u = 1.25, v = 1.25 > 1 spikes. t1: its self-weight
    -1.5 sees that spike one step late: u = 0.625 + 1.25 - 1.5 = 0.375 = v, silent (with
    R00 = 0: u = 1.875, spikes). Neuron 1: t0 v = b = 0.125; t1 u = R10 s0[t0] = 1,
    v = 0.0625 + 1 + 0.125 = 1.1875 > 1 spikes, one step after neuron 0 (without the bias:
    v = 1.0, not > 1); t2 u = 0.5, v = 0.625; t3 u = 0.25, v = 0.6875."""
    assert _two_neurons(-1.5, 0.125) == [[1, 0, 0, 0], [0, 1, 0, 0]]
    # R00 = 0: neuron 0 also spikes at t1, so neuron 1 at t2 (u = 0.5 + 1, v = 1.625), not t3 (v = 0.875)
    assert _two_neurons(0.0, 0.125) == [[1, 1, 0, 0], [0, 1, 1, 0]]
    assert _two_neurons(-1.5, 0.0) == [[1, 0, 0, 0], [0, 0, 0, 0]]


def _dyadic_rnn(method, seed=0):
    """A random 8-16-10 rnn with bias whose weights, biases and thresholds are multiples
    of 1/64 and decays 1/2: every float64 sum is exact, so any evaluation order agrees."""
    torch.manual_seed(seed)
    m = _rnn([8, 16, 10], method=method, bias=True, i_decay=2048, v_decay=2048).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight") or name.endswith("bias"):
                p.copy_(torch.round(torch.randn_like(p) * (48 if "syn" in name else 24)) / 64)
        for layer in m.layers:
            layer.theta_base.copy_(torch.round(torch.rand_like(layer.theta_base) * 64 + 32) / 64)
        if m.regulator is not None:
            m.regulator.log_s.fill_(np.log(2.0))          # scale 2: exact too
    return m.eval()


@pytest.mark.parametrize("method", ["ahsar", "rouser"])
def test_torch_model_equals_ir_reference(method, tmp_path):
    """The torch model's spikes equal the IR semantics (numpy reference) and the float
    emulator's, layer by layer, on the graph checkpoint.to_graph imports (AHSAR's scale
    in the thresholds)."""
    m = _dyadic_rnn(method)
    path = tmp_path / "m.pt"
    ckpt = checkpoint.make_checkpoint(m.float(), data.load("sdigits"), steps=8, seed=0, history=[],
                                      test_accuracy=0.5, test_rates=[0.1, 0.1])
    checkpoint.save(ckpt, path)
    graph = checkpoint.to_graph(path)
    assert graph.layers[0].recurrent.shape == (16, 16) and graph.layers[1].recurrent is None
    x = data.load("sdigits").test.x[:60]
    with torch.no_grad():
        _, want = m.double()(torch.from_numpy(x).double())
    h, total = x, 0
    for w, layer in zip(want, graph.layers):
        h = _reference(layer, h)
        np.testing.assert_array_equal(w.numpy().astype(bool), h)
        total += int(h.sum())
    assert total > 500
    for w, g in zip(want, emulator.run(graph, x, integer=False)):
        np.testing.assert_array_equal(w.numpy().astype(bool), g)
    if method == "ahsar":    # deployed threshold = theta_base * G * s
        np.testing.assert_array_equal(graph.layers[0].threshold, 2 * m.layers[0].theta_base.double().numpy())


def test_checkpoint_round_trip_with_recurrent_weights_and_bias(tmp_path):
    ckpt = train(data="sdigits", method="rouser+ahsar", arch="rnn", hidden=(12,), epochs=1, bias=True,
                 train_samples=200, progress=False)
    assert ckpt["arch"]["kind"] == "rnn" and ckpt["data"]["steps"] == 8 and ckpt["train"]["bias"] is True
    path = tmp_path / "m.pt"
    checkpoint.save(ckpt, path)
    model = checkpoint.build_model(checkpoint.load(path))
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(model.state_dict()[k], v), k
    layers = checkpoint.to_graph(path).layers
    np.testing.assert_array_equal(layers[0].recurrent, ckpt["state_dict"]["layers.0.rec.weight"].double().numpy())
    np.testing.assert_array_equal(layers[1].bias, ckpt["state_dict"]["layers.1.bias"].double().numpy())
    assert layers[0].bias.shape == (12,) and layers[1].recurrent is None
    assert layers[0].recurrent.dtype == layers[0].bias.dtype == np.float64

    def bad(edit, error, match):
        c = {**ckpt, "state_dict": dict(ckpt["state_dict"]), "arch": {**ckpt["arch"],
             "layers": [dict(s) for s in ckpt["arch"]["layers"]]}}
        edit(c)
        checkpoint.save(c, tmp_path / "bad.pt")
        with pytest.raises(error, match=match) as e:
            checkpoint.build_model(checkpoint.load(tmp_path / "bad.pt"))
        assert "\n" not in str(e.value)

    bad(lambda c: c["state_dict"].update({"layers.0.rec.weight": torch.zeros(12, 11)}), ModelFileError,
        r"layers.0.rec.weight has shape/type \(12, 11\).*expected dense float \(12, 12\)")
    bad(lambda c: c["state_dict"].update({"layers.0.bias": torch.zeros(13)}), ModelFileError,
        r"layers.0.bias has shape/type \(13,\)")
    bad(lambda c: c["state_dict"].pop("layers.0.rec.weight"), ModelFileError, "lacks layers.0.rec.weight")
    bad(lambda c: (c["arch"]["layers"][0].pop("recurrent"), c["arch"].update(kind="mlp")), UnsupportedLayerError,
        "layers.0.rec.weight.*'recurrent': true")
    bad(lambda c: c["arch"]["layers"][0].update(recurrent="yes"), ModelFileError,
        "layer 0 .* 'recurrent' is 'yes', expected true or false")
    bad(lambda c: c["arch"].update(kind="mlp"), UnsupportedLayerError,
        "arch.kind 'mlp' but a layer has 'recurrent': true")


def test_emulator_float_equals_trained_torch_model(tmp_path):
    """A trained rnn with biases (float32 weights, any values): the float emulator on the
    imported graph gives the torch model's spikes exactly (float64 both; the same order of
    additions: du u + (W x + R s), dv v + u + b)."""
    ckpt = train(data="sdigits", method="ahsar", arch="rnn", hidden=(24,), epochs=2, bias=True, seed=2,
                 progress=False)
    checkpoint.save(ckpt, tmp_path / "m.pt")
    model = checkpoint.build_model(checkpoint.load(tmp_path / "m.pt")).double()
    graph = checkpoint.to_graph(tmp_path / "m.pt")
    x = data.load("sdigits").test.x
    with torch.no_grad():
        _, want = model(torch.from_numpy(x).double())
    got = emulator.run(graph, x, integer=False)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w.numpy().astype(bool), g)
    assert min(int(g.sum()) for g in got) > 300
    assert np.abs(graph.layers[0].bias).max() > 0 and np.abs(graph.layers[0].recurrent).max() > 0


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_recurrently(method):
    """One short epoch per method on row-by-row digits: finite losses, rates recorded."""
    ckpt = train(data="sdigits", method=method, arch="rnn", hidden=(16,), epochs=1, train_samples=200,
                 progress=False)
    assert np.isfinite(ckpt["history"][0]["train_loss"]) and len(ckpt["test_rates"]) == 2
    assert ckpt["state_dict"]["layers.0.rec.weight"].shape == (16, 16)


def test_sdigits_rnn_learns_above_chance():
    """Row-by-row digits (8 steps of 8 binary inputs), rnn with AHSAR, a few seconds:
    far above the 10 % of chance (54 % measured; 1257 binarised 8x8 training images)."""
    ckpt = train(data="sdigits", method="ahsar", arch="rnn", hidden=(48,), epochs=6, seed=0, progress=False)
    assert ckpt["test_accuracy"] > 0.4
    assert 0 < ckpt["test_rates"][0] < 0.5


def test_weight_gradients_identical_with_ahsar_on_or_off_recurrent():
    """METHODS.md 1 for recurrent layers: equal effective thresholds -> identical gradients
    of W, R and b with the regulator on or off."""
    torch.manual_seed(0)
    reg = _rnn([8, 6, 4, 3], method="ahsar", bias=True)
    reg.regulator.log_s.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
    with torch.no_grad():
        for layer in reg.layers:
            layer.syn.weight.abs_()                      # enough spikes in every layer
            layer.bias.fill_(-0.1)
    plain = _rnn([8, 6, 4, 3], method="baseline", bias=True)
    plain.load_state_dict({k: v for k, v in reg.state_dict().items() if not k.startswith("regulator")})
    with torch.no_grad():
        for layer, s in zip(plain.layers, reg.scales()):
            layer.theta_base.mul_(s.float() if isinstance(s, torch.Tensor) else s)
    x = (torch.rand(5, 10, 8) < 0.6).float()
    y = torch.tensor([0, 1, 2, 0, 1])
    for m in (reg, plain):
        m.train()
        counts, spikes = m(x)
        F.cross_entropy(counts, y).backward()
    assert all(int(s.sum()) > 3 for s in spikes)
    for a, b in zip(reg.parameters(), plain.parameters()):
        assert torch.equal(a.grad, b.grad)
    assert float(reg.layers[0].rec.weight.grad.abs().sum()) > 0


def test_cli_trains_an_rnn_and_refuses_bad_options(cli_inproc, tmp_path):
    """`ahsar train --arch rnn --bias --i-decay --v-decay` on sdigits; bad values: one line, exit 1."""
    out = tmp_path / "m.pt"
    code, stdout, err = cli_inproc("train", "--data", "sdigits", "--arch", "rnn", "--bias", "--hidden", "10",
                                   "--i-decay", "2048", "--v-decay", "1024", "--epochs", "1",
                                   "--train-samples", "100", "-q", "-o", out)
    assert code == 0, err
    ckpt = checkpoint.load(out)
    assert ckpt["arch"]["kind"] == "rnn" and ckpt["neuron"]["i_decay"] == 2048 and ckpt["neuron"]["v_decay"] == 1024
    assert ckpt["arch"]["layers"][0] == {"type": "cuba_lif_dense", "n_in": 8, "n_out": 10, "recurrent": True,
                                         "bias": True}
    for args, why in [(("--i-decay", "5000"), "i_decay 5000 outside Loihi's decay range 0..4096"),
                      (("--arch", "cnn", "--bias"), "--bias is for dense layers")]:
        code, _, err = cli_inproc("train", "--data", "sdigits", "--epochs", "1", "-q", "-o", tmp_path / "x.pt", *args)
        assert code == 1 and why in err and len(err.strip().splitlines()) == 1, err
