"""Convolutional layers: pooling fusion against torch, conv in the emulator, the fold per
output channel, and Lava against the emulator on a small conv network."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ahsar_deploy import emulator
from ahsar_deploy.ir import DeployGraph, Layer
from ahsar_deploy.passes.check import check
from ahsar_deploy.passes.fold import fold
from ahsar_deploy.passes.fuse import fuse_pool, fuse_pool_conv, fuse_pool_dense
from hw_targets import LOIHI


def _pool(x: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    y = F.avg_pool2d(x, k, k)
    return y * (k * k) if mode == "sum" else y


@pytest.mark.parametrize("mode", ["sum", "avg"])
@pytest.mark.parametrize("k,hw", [(2, (8, 8)), (2, (9, 7)), (3, (10, 12))])
def test_pool_then_dense_equals_fused_dense(mode, k, hw):
    rng = np.random.default_rng(k)
    c, h, w = 3, *hw
    x = torch.from_numpy((rng.random((20, c, h, w)) < 0.3).astype(np.float64))
    pooled = _pool(x, k, mode)
    wd = rng.normal(size=(5, pooled[0].numel()))
    want = pooled.flatten(1) @ torch.from_numpy(wd).T
    fused = fuse_pool_dense(wd, (c, h, w), k, mode)
    got = x.flatten(1) @ torch.from_numpy(fused).T
    # exact in real arithmetic; float64 differs only in summation order
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-12)
    if mode == "sum":   # integer weights: every sum exact, so equality is exact
        wi = rng.integers(-50, 50, size=wd.shape).astype(np.float64)
        want = pooled.flatten(1) @ torch.from_numpy(wi).T
        got = x.flatten(1) @ torch.from_numpy(fuse_pool_dense(wi, (c, h, w), k, mode)).T
        assert torch.equal(got, want)


@pytest.mark.parametrize("mode", ["sum", "avg"])
@pytest.mark.parametrize("k,hw,kernel,stride,padding", [
    (2, (12, 12), (3, 3), (1, 1), (0, 0)), (2, (13, 11), (3, 2), (2, 1), (1, 0)),
    (3, (12, 15), (2, 2), (1, 1), (1, 1))])
def test_pool_then_conv_equals_fused_conv(mode, k, hw, kernel, stride, padding):
    rng = np.random.default_rng(sum(hw))
    x = torch.from_numpy((rng.random((10, 2, *hw)) < 0.3).astype(np.float64))
    wi = rng.integers(-60, 60, size=(4, 2, *kernel)).astype(np.float64)
    want = F.conv2d(_pool(x, k, mode), torch.from_numpy(wi), stride=stride, padding=padding)
    fw, fs, fp = fuse_pool_conv(wi, stride, padding, k, mode)
    got = F.conv2d(x, torch.from_numpy(fw), stride=fs, padding=fp)
    assert got.shape == want.shape
    if mode == "sum":
        assert torch.equal(got, want)
    else:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-12)
    # the Layer-level API gives the same layer and keeps the output shape
    pooled_shape = (2, hw[0] // k, hw[1] // k)
    layer = Layer(name="c", weight=wi, threshold=np.ones(4), i_decay=1024, v_decay=512,
                  kind="conv", in_shape=pooled_shape, stride=stride, padding=padding)
    fused = fuse_pool(layer, (2, *hw), k, mode)
    assert fused.in_shape == (2, *hw) and fused.out_shape == layer.out_shape
    assert fused.stride == tuple(s * k for s in stride) and fused.padding == tuple(p * k for p in padding)
    np.testing.assert_array_equal(fused.weight, fw)


def _conv_layer(rng, name, in_shape, c_out, kernel, stride=(1, 1), padding=(0, 0), integer=False):
    w = rng.normal(0, 0.6, size=(c_out, in_shape[0], *kernel))
    layer = Layer(name=name, weight=w, threshold=rng.uniform(0.5, 2.0, c_out),
                  i_decay=1024, v_decay=512, kind="conv", in_shape=in_shape,
                  stride=stride, padding=padding)
    if integer:
        layer = layer.with_(weight=2 * rng.integers(-40, 60, size=w.shape), vth=int(rng.integers(50, 400)),
                            threshold=np.ones(c_out))
    return layer


def test_conv_float_layer_matches_torch_loop():
    rng = np.random.default_rng(1)
    layer = _conv_layer(rng, "c", (2, 7, 6), 3, (3, 3), stride=(2, 1), padding=(1, 0))
    assert layer.out_shape == (3, 4, 4) and layer.n_out == 48 and layer.n_in == 84
    x = rng.random((4, 6, layer.n_in)) < 0.4
    got = emulator.layer_float(layer, x)
    # reference: torch conv per step, per-channel threshold, Loihi's float CUBA update
    xt = torch.from_numpy(x.astype(np.float64)).reshape(4, 6, 2, 7, 6)
    th = torch.from_numpy(layer.threshold)[:, None, None]
    u = torch.zeros(4, 3, 4, 4, dtype=torch.float64)
    v = torch.zeros_like(u)
    for t in range(6):
        cur = F.conv2d(xt[:, t], torch.from_numpy(layer.weight), stride=(2, 1), padding=(1, 0))
        u = 0.75 * u + cur
        v = 0.875 * v + u
        s = v > th
        v = torch.where(s, torch.zeros_like(v), v)
        np.testing.assert_array_equal(got[:, t], s.reshape(4, -1).numpy())
    assert got.any() and not got.all()


def test_fold_is_exact_per_output_channel():
    rng = np.random.default_rng(2)
    conv = _conv_layer(rng, "c", (1, 8, 8), 4, (3, 3))
    dense = Layer(name="d", weight=rng.normal(0, 0.3, size=(5, conv.n_out)),
                  threshold=rng.uniform(0.5, 2, 5), i_decay=1024, v_decay=512)
    g = DeployGraph(layers=(conv, dense), n_inputs=64, steps=10, dataset="random",
                    encoding="random", method="baseline", source_sha256="")
    x = rng.random((30, 10, 64)) < 0.5
    folded = fold(g)
    assert folded.layers[0].threshold.shape == (4,) and np.all(folded.layers[0].threshold == 1)
    before, after = emulator.run(g, x, integer=False), emulator.run(folded, x, integer=False)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(b, a)
    assert int(before[0].sum()) > 100 and int(before[1].sum()) > 10


def test_conv_output_wraps_at_24_bits_like_lava():
    # Lava's conv output is signed_clamp(x, 24) = (x + 2**23) % 2**24 - 2**23 (a wrap)
    layer = Layer(name="w", weight=np.full((1, 600, 1, 1), 254 * 64), threshold=np.ones(1),
                  i_decay=4096, v_decay=4096, vth=131071, kind="conv", in_shape=(600, 1, 1))
    x = np.ones((1, 1, 600), dtype=bool)
    assert emulator.synaptic_int(layer, x)[0, 0, 0] == 600 * 254 * 64 - 2 ** 24
    small = layer.with_(weight=np.full((1, 600, 1, 1), 254 * 40))
    assert emulator.synaptic_int(small, x)[0, 0, 0] == 600 * 254 * 40


def test_small_conv_network_lava_equals_emulator(tmp_path, conv_graph, lava_equals_emulator):
    from exporters import lava
    g = check(conv_graph, LOIHI)
    rng = np.random.default_rng(5)
    x = rng.random((3, g.steps, 70)) < 0.5
    lava.write_netx(g, tmp_path / "model.net")
    want = lava_equals_emulator(tmp_path, g, x)
    assert [w.shape[2] for w in want] == [105, 24, 5]
    assert all(int(w.sum()) > 0 for w in want), [int(w.sum()) for w in want]


def test_synaptic_ops_count_each_routed_spike():
    conv = Layer(name="c", weight=np.ones((2, 1, 3, 3)), threshold=np.ones(2), i_decay=1, v_decay=0,
                 kind="conv", in_shape=(1, 4, 4))           # out (2, 2, 2), no padding
    x = np.zeros((1, 1, 16))
    x[0, 0, 0] = 1          # corner pixel (0, 0): only output (0, 0) of each channel sees it
    x[0, 0, 5] = 1          # pixel (1, 1): in all 4 windows
    assert conv.synaptic_ops(x) == 2 * (1 + 4)
    dense = Layer(name="d", weight=np.ones((3, 16)), threshold=np.ones(3), i_decay=1, v_decay=0)
    assert dense.synaptic_ops(x) == 2 * 3


def test_check_names_conv_rules():
    from ahsar_deploy.errors import TargetError
    layer = Layer(name="c", weight=np.full((2, 1, 3, 3), 2), threshold=np.ones(2), i_decay=1024, v_decay=512,
                  kind="conv", in_shape=(1, 4, 4), vth=10)
    g = DeployGraph(layers=(layer,), n_inputs=16, steps=2, dataset="random", encoding="random",
                    method="baseline", source_sha256="")
    assert check(g, LOIHI).notes["cores"] == 1
    with pytest.raises(TargetError, match="c breaks loihi rule 'conv weight exponent'"):
        check(g.with_(layers=(layer.with_(weight_exp=1),)), LOIHI)
    with pytest.raises(TargetError, match="c breaks loihi rule 'conv shape'"):
        check(g.with_(layers=(layer.with_(in_shape=(1, 2, 2)),)), LOIHI)


def test_lava_conv_output_wraps_like_emulator(tmp_path):
    """Weights off the 8-bit grid (Lava does not enforce it) push the conv output past
    2**23: Lava wraps it (signed_clamp), and so does the emulator."""
    from exporters import lava
    w = np.array([20000, 10000, -9000, 3000]).reshape(4, 1, 1, 1) * np.ones((4, 600, 1, 1), dtype=np.int64)
    layer = Layer(name="c", weight=w, threshold=np.ones(4), i_decay=2048, v_decay=1024, vth=5000,
                  kind="conv", in_shape=(600, 1, 1))
    g = DeployGraph(layers=(layer,), n_inputs=600, steps=4, dataset="random", encoding="random",
                    method="baseline", source_sha256="", target="loihi")
    x = np.ones((1, 4, 600), dtype=bool)
    x[0, 1] = False
    a = emulator.synaptic_int(layer, x)
    assert a[0, 0, 0] == 600 * 20000 - 2 ** 24           # wrapped
    lava.write_netx(g, tmp_path / "model.net")
    got = lava.run(tmp_path, x, g.steps, timeout_s=300, progress=False)[0]
    want = emulator.run(g, x)[0]
    np.testing.assert_array_equal(got, want)
    assert want.any() and not want.all()


def test_lead_cnn_model_through_ir_contract():
    """The training CNN (snn.py cnn_specs: conv -> pool -> conv -> pool -> flatten -> dense)
    mapped onto the IR with the pooling fused gives the torch model's spikes exactly."""
    from ahsar_deploy.checkpoint import model_layers
    from ahsar_deploy.snn import SNN, cnn_specs
    torch.manual_seed(0)
    for pool in ("sum_pool", "avg_pool"):
        model = SNN(method="baseline", input_shape=(1, 8, 8),
                    specs=cnn_specs(channels=(4, 6), kernel=3, pool=pool, padding=1)).double().eval()
        with torch.no_grad():
            for l in model.layers:
                l.syn.weight.mul_(3.0)
                l.theta_base.copy_(torch.rand(l.theta_base.shape, dtype=torch.float64) + 0.5)
        layers = model_layers(model)
        g = DeployGraph(layers=tuple(layers), n_inputs=64, steps=8, dataset="digits", encoding="rate",
                        method="baseline", source_sha256="")
        x = (np.random.default_rng(1).random((20, 8, 64)) < 0.4).astype(np.uint8)
        with torch.no_grad():
            _, want = model(torch.from_numpy(x).double())
        got = emulator.run(g, x, integer=False)
        assert [l.kind for l in g.layers] == ["conv", "conv", "dense"]
        assert g.layers[1].in_shape == (4, 8, 8) and g.layers[2].n_in == 6 * 4 * 4   # pools fused
        for i, (w_, g_) in enumerate(zip(want, got)):
            np.testing.assert_array_equal(g_, w_.numpy().astype(bool), err_msg=f"{pool} layer {i}")
            assert g_.any(), (pool, i)
        folded = fold(g)
        for a, b in zip(got, emulator.run(folded, x, integer=False)):
            np.testing.assert_array_equal(a, b)


def test_emulator_chunks_samples_without_changing_spikes(monkeypatch, conv_graph):
    x = np.random.default_rng(4).random((9, conv_graph.steps, 70)) < 0.5
    whole_int = emulator.run(conv_graph, x)
    whole_float = emulator.run(emulator.float_view(conv_graph), x)
    monkeypatch.setattr(emulator, "CHUNK_ELEMENTS", 2 * conv_graph.steps * 105)   # 2 samples per chunk
    for a, b in zip(whole_int, emulator.run(conv_graph, x)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(whole_float, emulator.run(emulator.float_view(conv_graph), x)):
        np.testing.assert_array_equal(a, b)


def test_fused_pool_conv_network_lava_equals_emulator(tmp_path, lava_equals_emulator):
    """conv -> sum pool 2 -> conv (fused: 6x4 kernel, stride (2, 4), padding (2, 0)) -> dense
    on a non-square input, integer weights: Lava == emulator on every spike."""
    from exporters import lava
    rng = np.random.default_rng(7)
    c0 = Layer(name="conv0", weight=2 * rng.integers(-30, 60, size=(3, 1, 3, 3)), threshold=np.ones(3),
               i_decay=1024, v_decay=512, kind="conv", in_shape=(1, 8, 10), padding=(1, 1), vth=150)
    c1 = Layer(name="conv1", weight=rng.integers(-30, 60, size=(4, 3, 3, 2)).astype(float), threshold=np.ones(4),
               i_decay=2048, v_decay=256, kind="conv", in_shape=(3, 4, 5), stride=(1, 2), padding=(1, 0))
    c1 = fuse_pool(c1, c0.out_shape, 2, "sum")
    assert c1.weight.shape == (4, 3, 6, 4) and c1.stride == (2, 4) and c1.padding == (2, 0)
    c1 = c1.with_(weight=2 * c1.weight.astype(np.int64), vth=400)
    d = Layer(name="fc2", weight=2 * rng.integers(-60, 90, size=(5, c1.n_out)), threshold=np.ones(5),
              i_decay=1024, v_decay=512, vth=200)
    g = check(DeployGraph(layers=(c0, c1, d), n_inputs=80, steps=6, dataset="random", encoding="random",
                          method="baseline", source_sha256="", target="loihi"), LOIHI)
    x = np.random.default_rng(8).random((3, 6, 80)) < 0.5
    lava.write_netx(g, tmp_path / "model.net")
    want = lava_equals_emulator(tmp_path, g, x)
    assert all(int(w.sum()) > 0 for w in want), [int(w.sum()) for w in want]
