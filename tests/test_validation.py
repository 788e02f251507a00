"""Issue 30, items 4, 5, 9: shapes and arguments the API and the CLI read alike. Each bad
input gets the same one-line refusal from both (the API's keyword, samples=0, where the
CLI names its flag, --samples 0), exit 1 from the CLI, and nothing written."""
import json
import logging

import nir
import numpy as np
import pytest
import torch

import ahsar_deploy as ad
from ahsar_deploy import data
from ahsar_deploy.errors import DeployError

STEPS, F = 6, 64   # the checkpoint below: digits' 64 inputs, 6 time steps


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_ckpt):
    path = tmp_path_factory.mktemp("validation") / "m.pt"
    torch.save(make_ckpt([F, 16, 10], steps=STEPS), path)
    return path


@pytest.fixture(scope="module")
def build(ckpt):
    out = ckpt.parent / "b"
    ad.export(ckpt, "loihi", out, calib_samples=64, qat="off", refit=False)
    return out


def _foreign_nir():
    """A graph of another writer (no steps recorded): 64 -> Linear -> IF(10)."""
    w = np.random.default_rng(0).normal(0, 0.4, (10, F))
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([F])), "fc": nir.Linear(weight=w),
        "spk": nir.IF(r=np.ones(10), v_threshold=np.ones(10)), "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "fc"), ("fc", "spk"), ("spk", "output")], type_check=False)


def _spikes(n, t=STEPS, seed=0):
    return (np.random.default_rng(seed).random((n, t, F)) < 0.3).astype(np.uint8)


def _error(code, err) -> str:
    """The CLI's one error line; asserts exit 1 and exactly one error line."""
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert code == 1 and len(lines) == 1, err
    return lines[0]


def _api_error(fn, *args, **kw) -> str:
    with pytest.raises(DeployError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# item 4: a time-first (T, N, F) calibration array

def test_time_first_calibration_is_refused_naming_both_readings(ckpt, tmp_path, cli_inproc):
    """The checkpoint runs 6 steps; (6, 40, 64) read as (N, T, F) would be 40 steps."""
    x = _spikes(40).swapaxes(0, 1)   # snnTorch's (T, N, F)
    np.save(tmp_path / "tf.npy", x)
    tail = ("shape (6, 40, 64): read as 6 samples x 40 steps, but the model runs 6 steps; if it is time-first "
            "(T, N, F) transpose it to (N, T, F) with np.swapaxes(x, 0, 1)")
    assert _api_error(ad.export, ckpt, "loihi", tmp_path / "a", calib=x) == f"calibration array: {tail}"
    line = _error(*cli_inproc("export", ckpt, "--calib", tmp_path / "tf.npy", "-o", tmp_path / "c", "-q")[::2])
    assert line.endswith(f"calibration data {tmp_path / 'tf.npy'}: {tail}"), line
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_graph_steps_win_over_the_calibration_layout(build, tmp_path, cli_inproc):
    """A NIR graph that records its 6 steps (model.nir of a build), or --steps 6 with a
    foreign graph: a (6, 40, 64) array is refused, where it used to make a 40-step build."""
    x = _spikes(40).swapaxes(0, 1)
    np.save(tmp_path / "tf.npy", x)
    nir.write(str(tmp_path / "foreign.nir"), _foreign_nir())
    want = "read as 6 samples x 40 steps, but the model runs 6 steps"
    for model, steps in ((build / "model.nir", None), (tmp_path / "foreign.nir", STEPS)):
        assert want in _api_error(ad.export, model, "loihi", tmp_path / "a", calib=x, steps=steps)
        args = () if steps is None else ("--steps", steps)
        assert want in _error(*cli_inproc("export", model, "--calib", tmp_path / "tf.npy", *args,
                                          "-o", tmp_path / "c", "-q")[::2])
    assert _api_error(ad.export, _foreign_nir(), "loihi", tmp_path / "a", calib=x, steps=STEPS).endswith(
        "np.swapaxes(x, 0, 1)")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_steps_read_from_the_calibration_array_are_said(tmp_path, cli_inproc, caplog):
    """Nothing says the steps (a foreign graph, no --steps): the array sets them, and the
    console says how it was read."""
    x = _spikes(40, t=8)
    np.save(tmp_path / "cal.npy", x)
    nir.write(str(tmp_path / "foreign.nir"), _foreign_nir())
    said = "of shape (40, 8, 64) read as 40 samples x 8 steps x 64 features (N, T, F): the build runs 8 steps"
    code, _, err = cli_inproc("export", tmp_path / "foreign.nir", "--calib", tmp_path / "cal.npy",
                              "-o", tmp_path / "c")
    assert code == 0 and said in err and "np.swapaxes(x, 0, 1)" in err, err
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["steps"] == 8
    with caplog.at_level(logging.INFO):
        m = ad.export(_foreign_nir(), "loihi", tmp_path / "a", calib=x)
    assert m["steps"] == 8 and any(said in r.getMessage() for r in caplog.records)


# item 5: labels, channels-last images, float spikes, the calibration subset

def test_labels_that_do_not_start_at_zero_are_refused(tmp_path, cli_inproc):
    ds = data.load("digits")
    np.savez(tmp_path / "d.npz", x=ds.train.x, y=ds.train.y + 1)   # 1..10
    want = ("labels 1..10 with class(es) 0 missing would build a 11-class network; labels must be the class "
            "indices 0..C-1, each present: shift 1-based labels (y - 1) or remap them")
    assert want in _api_error(_train, data=str(tmp_path / "d.npz"))
    line = _error(*cli_inproc("train", "--data", tmp_path / "d.npz", "--epochs", "1", "-o", tmp_path / "m.pt")[::2])
    assert want in line and "d.npz" in line, line
    np.savez(tmp_path / "s.npz", x=ds.train.x, y=np.where(ds.train.y == 3, 9, ds.train.y))   # 3 skipped
    line = _error(*cli_inproc("train", "--data", tmp_path / "s.npz", "--epochs", "1", "-o", tmp_path / "m.pt")[::2])
    assert "labels 0..9 with class(es) 3 missing" in line, line
    assert not (tmp_path / "m.pt").exists()


def _train(**kw):
    from ahsar_deploy.train import train
    return train(**{"hidden": (8,), "steps": 2, "epochs": 1, "progress": False, **kw})


def test_channels_last_images_are_named(tmp_path, cli_inproc):
    """(N, H, W, C) RGB images: `train --arch cnn` and a CNN graph's export say channels-last
    and the transpose (the export used to take them: same size, pixels scrambled)."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 12, 12, 3)).astype(np.float32)
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(40) % 4)
    want = "images (N, 12, 12, 3) are channels-last (N, H, W, C)"
    fix = "np.transpose(x, (0, 3, 1, 2))"
    msg = _api_error(_train, data=str(tmp_path / "rgb.npz"), arch="cnn")
    assert want in msg and fix in msg, msg
    line = _error(*cli_inproc("train", "--data", tmp_path / "rgb.npz", "--arch", "cnn", "--epochs", "1",
                              "-o", tmp_path / "m.pt")[::2])
    assert want in line and fix in line, line
    conv = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([3, 12, 12])),
        "conv": nir.Conv2d(input_shape=(12, 12), weight=rng.normal(0, 0.5, (4, 3, 3, 3)), stride=1, padding=1,
                           dilation=1, groups=1, bias=np.zeros(4)),
        "spk1": nir.IF(r=np.ones((4, 12, 12)), v_threshold=np.ones((4, 12, 12))),
        "flat": nir.Flatten(input_type={"input": np.array([4, 12, 12])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=rng.normal(0, 0.1, (4, 576))),
        "spk2": nir.IF(r=np.ones(4), v_threshold=np.ones(4)), "output": nir.Output(output_type=np.array([4]))},
        edges=[("input", "conv"), ("conv", "spk1"), ("spk1", "flat"), ("flat", "fc"), ("fc", "spk2"),
               ("spk2", "output")], type_check=False)
    nir.write(str(tmp_path / "cnn.nir"), conv)
    msg = _api_error(ad.export, conv, "loihi", tmp_path / "a", data=str(tmp_path / "rgb.npz"), steps=4)
    assert want in msg and fix in msg, msg
    line = _error(*cli_inproc("export", tmp_path / "cnn.nir", "--data", tmp_path / "rgb.npz", "--steps", "4",
                              "-o", tmp_path / "c", "-q")[::2])
    assert want in line and fix in line, line
    assert not any((tmp_path / p).exists() for p in ("m.pt", "a", "c"))


def test_float_spikes_in_a_data_file_run_as_the_api_runs_them(build, tmp_path, cli_inproc):
    """Float 0/1 spikes (N, T, F): `ahsar run --data FILE.npz` runs them as ad.run does."""
    x = _spikes(30, seed=1).astype(np.float32)
    y = np.arange(30) % 10
    np.savez(tmp_path / "fs.npz", x=x, y=y)
    want = ad.run(build, x, y)["predictions"]
    code, out, err = cli_inproc("run", build, "--data", tmp_path / "fs.npz", "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["predictions"] == want
    ds = data.load(str(tmp_path / "fs.npz"))
    assert ds.steps == STEPS and ds.n_features == F


def test_calibration_subset_is_said(ckpt, tmp_path, cli_inproc):
    np.save(tmp_path / "cal.npy", _spikes(100))
    code, _, err = cli_inproc("export", ckpt, "--calib", tmp_path / "cal.npy", "--calib-samples", "40",
                              "--qat", "off", "--no-refit", "-o", tmp_path / "c")
    assert code == 0 and "calibrating on 40 of 100 samples of the calibration data" in err, err
    code, _, err = cli_inproc("export", ckpt, "--calib-samples", "40", "--qat", "off", "--no-refit",
                              "-o", tmp_path / "d")
    n = len(data.load("digits").train.y)
    assert code == 0 and f"calibrating on 40 of {n} training samples of digits (--calib-samples)" in err, err


# item 9: one validation for the API and the CLI

@pytest.mark.parametrize("value", [0, -5])
def test_samples_refused_alike(build, tmp_path, cli_inproc, value):
    """ad.run(samples=0) raised ZeroDivisionError, samples=-5 ran 355 of 360 samples."""
    x, y = _spikes(30), np.arange(30) % 10
    before = {p.name: p.stat().st_mtime_ns for p in build.iterdir()}
    tail = "must be a whole number of test samples (leave it out for all), at least 1"
    for fn in (ad.run, ad.energy):
        kw = {"y": y} if fn is ad.run else {}
        assert _api_error(fn, build, x, samples=value, **kw) == f"samples={value}: {tail}"
        assert _api_error(fn, build, samples=value) == f"samples={value}: {tail}"
    for cmd in ("run", "energy"):
        line = _error(*cli_inproc(cmd, build, "--samples", value, "--backend", "emulator")[::2])
        assert line == f"ahsar {cmd}: error: --samples {value}: {tail}", line
    assert _api_error(ad.run, build, x, y, timeout=0) == "timeout=0: must be a positive, finite number of seconds"
    assert _error(*cli_inproc("run", build, "--timeout", "0")[::2]).endswith(
        "--timeout 0.0: must be a positive, finite number of seconds")
    assert {p.name: p.stat().st_mtime_ns for p in build.iterdir()} == before   # no run-*.json, no spike cache


def test_reference_of_the_wrong_length_refused_alike(build, tmp_path, cli_inproc):
    x, y = _spikes(30), np.arange(30) % 10
    before = {p.name: p.stat().st_mtime_ns for p in build.iterdir()}
    ref = np.zeros(5, dtype=np.int64)
    np.save(tmp_path / "ref.npy", ref)
    tail = "dtype int64, shape (5,); expected at least 30 integer class indices (M,), one per test sample in order"
    assert _api_error(ad.run, build, x, y, reference=ref) == f"reference: {tail}"
    assert _api_error(ad.run, build, x, y, reference=list(ref)) == f"reference: {tail}"
    line = _error(*cli_inproc("run", build, "--samples", 30, "--reference", tmp_path / "ref.npy")[::2])
    assert line.endswith(f"reference predictions {tmp_path / 'ref.npy'}: {tail}"), line
    assert _api_error(ad.run, build, x, y, reference=np.full(30, 10)) == "reference: class indices 10..10 outside 0..9"
    assert {p.name: p.stat().st_mtime_ns for p in build.iterdir()} == before   # nothing written


def test_train_and_export_arguments_refused_alike(ckpt, tmp_path, cli_inproc):
    """train(epochs=0) returned an untrained checkpoint, train_samples=0 divided by zero;
    export named the CLI's flag from the API."""
    for name, flag, value in (("epochs", "--epochs", 0), ("train_samples", "--train-samples", 0),
                              ("batch", "--batch", -1), ("augment_shift", "--augment-shift", -1)):
        msg = _api_error(_train, **{name: value})
        assert msg.startswith(f"{name}={value}: must be a whole number of "), msg
        line = _error(*cli_inproc("train", flag, value, "-o", tmp_path / "m.pt")[::2])
        assert line == f"ahsar train: error: {flag} {value}: {msg.split(': ', 1)[1]}", line
    tail = "must be a whole number of calibration samples, at least 1"
    assert _api_error(ad.export, ckpt, "loihi", tmp_path / "a", calib_samples=0) == f"calib_samples=0: {tail}"
    assert _error(*cli_inproc("export", ckpt, "--calib-samples", 0, "-o", tmp_path / "c")[::2]) == \
        f"ahsar export: error: --calib-samples 0: {tail}"
    assert not any((tmp_path / p).exists() for p in ("m.pt", "a", "c"))
