"""Quantization-aware fine-tune (straight-through rounding) and the convex readout refit."""
import numpy as np
import torch

import hw_targets
from ahsar_deploy import checkpoint, data, emulator
from ahsar_deploy.passes.calibrate import calibrate
from ahsar_deploy.passes.fold import fold
from ahsar_deploy.passes.qat import _FakeQuant, finetune
from ahsar_deploy.passes.refit import refit_readout

LOIHI = hw_targets.get("loihi")


def test_fake_quant_rounds_to_the_grid_with_identity_gradient():
    fq = _FakeQuant(k=100.0, target=LOIHI)
    w = torch.tensor([0.013, -0.017, 0.5, 3.0, -3.0], dtype=torch.float64, requires_grad=True)
    q = fq(w)
    # 2*round(100w/2)/100, clipped to [-256, 254]/100
    np.testing.assert_allclose(q.detach().numpy(), [0.02, -0.02, 0.5, 2.54, -2.56], atol=1e-12)
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones(5, dtype=torch.float64))


def _graphs(small_model, n=256):
    folded = fold(checkpoint.to_graph(small_model))
    x = data.encode(data.load("digits").train.x[:n], folded.steps)
    q, _ = calibrate(folded, x, LOIHI)
    return folded, q, x


def test_refit_reduces_the_readout_drive_error(small_model):
    folded, q, x = _graphs(small_model)
    refit = refit_readout(folded, q, x, alpha=1e-6)
    hid_int = emulator.run(q.with_(layers=q.layers[:-1]), x, integer=True)[-1].sum(axis=1)
    hid_f = emulator.run(folded.with_(layers=folded.layers[:-1]), x, integer=False)[-1].sum(axis=1)
    target = hid_f @ folded.layers[-1].weight.T
    before = np.linalg.norm(hid_int @ folded.layers[-1].weight.T - target)
    after = np.linalg.norm(hid_int @ refit.layers[-1].weight.T - target)
    best = np.linalg.norm(hid_int @ np.linalg.lstsq(hid_int.astype(float), target, rcond=None)[0] - target)
    assert after < before
    assert after <= 1.01 * best          # tiny alpha: the least-squares optimum, to 1 %
    assert all(a is b for a, b in zip(refit.layers[:-1], folded.layers[:-1]))   # only the readout


def test_finetune_keeps_shapes_and_moves_weights(small_model):
    folded, q, x = _graphs(small_model, n=128)
    y = data.load("digits").train.y[:128]
    tuned = finetune(folded, q, x, y, LOIHI, epochs=1, lr=1e-3)
    for a, b in zip(folded.layers, tuned.layers):
        assert a.weight.shape == b.weight.shape and np.all(b.threshold == 1.0)
        assert np.abs(a.weight - b.weight).max() > 0
    q2, _ = calibrate(tuned, x, LOIHI, scales=[l.scale for l in q.layers])
    assert [l.scale for l in q2.layers] == [l.scale for l in q.layers]


def test_lasso_fista_matches_soft_thresholding_on_an_orthogonal_design():
    """With phi^T phi / N = I the LASSO solution is soft-thresholding of phi^T y / N."""
    from ahsar_deploy.passes.refit import lasso_fista
    rng = np.random.default_rng(0)
    n, h = 64, 8
    q, _ = np.linalg.qr(rng.normal(size=(n, h)))
    phi = q * np.sqrt(n)
    y = rng.normal(size=(n, 3)) * 2
    b = phi.T @ y / n
    want = np.sign(b) * np.maximum(np.abs(b) - 0.3, 0)
    np.testing.assert_allclose(lasso_fista(phi, y, alpha=0.3), want, atol=1e-9)
    assert np.count_nonzero(want == 0) > 0          # the L1 term really zeroes some weights


def test_qat_on_a_conv_network_is_announced_not_reported_as_run(tmp_path, caplog):
    """QAT does not fine-tune convolutions: the export says so, and calibration.json
    has no QAT accuracy (it used to report one for the unchanged network)."""
    import json

    from ahsar_deploy import build
    from ahsar_deploy.train import train
    ckpt = train(data="digits", method="ahsar", arch="cnn", hidden=(), channels=(4, 6), steps=6,
                 epochs=1, seed=0, train_samples=300, progress=False)
    checkpoint.save(ckpt, tmp_path / "m.pt")
    with caplog.at_level("WARNING"):
        build.export(tmp_path / "m.pt", "loihi", tmp_path / "b", calib_samples=64, qat="on", progress=False)
    assert any("QAT does not fine-tune convolutions" in r.getMessage() for r in caplog.records)
    acc = json.loads((tmp_path / "b" / "calibration.json").read_text())["validation_accuracy"]
    assert acc["qat"] is None and acc["chosen"] in ("quantized", "refit")


def test_largest_eigenvalue_equals_the_full_solver():
    """refit's Lipschitz constant: Lanczos agrees with eigvalsh, also for an all-zero Gram
    matrix (a silent hidden layer) and one whose start vector g @ 1 is zero."""
    import numpy as np
    from ahsar_deploy.passes.refit import _largest_eigenvalue
    rng = np.random.default_rng(0)
    phi = (rng.random((300, 200)) < 0.15) * rng.integers(0, 8, (300, 200)).astype(float)
    for g in (phi.T @ phi / 300, np.zeros((50, 50)), np.outer(np.r_[np.ones(25), -np.ones(25)],
                                                             np.r_[np.ones(25), -np.ones(25)]), np.eye(3)):
        assert abs(_largest_eigenvalue(g) - np.linalg.eigvalsh(g)[-1]) <= 1e-12 * max(1.0, np.abs(g).max() * len(g))
