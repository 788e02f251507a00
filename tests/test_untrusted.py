"""Untrusted model and calibration files: nothing executes, every field is checked, every
failure is one DeployError line naming the layer and field, and nothing is written."""
import os
import pickle

import numpy as np
import pytest
import torch

from ahsar_deploy import build, checkpoint, cli, data
from ahsar_deploy.errors import (BuildError, DatasetError, DeployError, ModelFileError,
                                 TargetError, UnsupportedLayerError)


def _set(path, value):
    """Mutation: set ckpt[a][b]... = value, path given as 'a.b.c' (list indices as ints)."""
    def f(ck):
        keys = path.split(".")
        d = ck
        for k in keys[:-1]:
            d = d[int(k)] if isinstance(d, list) else d[k]
        last = keys[-1]
        d[int(last) if isinstance(d, list) else last] = value
    return f


def _sd(key, fn):
    """Mutation of one state_dict entry."""
    def f(ck):
        ck["state_dict"][key] = fn(ck["state_dict"][key])
    return f


def _forge_sizes(ck):
    """Claim a 2^20-input, 2^16-neuron first layer (a 256 GB weight) consistently in arch;
    only the file's tensors disagree. Refused from shapes alone, nothing allocated."""
    arch = ck["arch"]
    arch["input_shape"] = [1 << 20]
    arch["sizes"][:2] = [1 << 20, 1 << 16]
    arch["layers"][0].update(n_in=1 << 20, n_out=1 << 16)
    arch["layers"][1]["n_in"] = 1 << 16


def _nan_at_end(t):
    t = t.clone()
    t.view(-1)[-1] = float("nan")
    return t


# (id, mutation, error class, words the one-line message must contain)
BAD_FIELDS = [
    ("forged-sizes", _forge_sizes, ModelFileError,
     ["layers.0.", "expected dense float (65536"]),
    ("sizes-bool", _set("arch.sizes", [64, True, 10]), ModelFileError, ["arch.sizes"]),
    ("layer-n_in", _set("arch.layers.1.n_in", 7), ModelFileError, ["layer 1", "'n_in'"]),
    ("layer-type-tensor", _set("arch.layers.0.type", torch.zeros(3, 3)), UnsupportedLayerError,
     ["layer 0", "a Tensor"]),
    ("arch-kind", _set("arch.kind", "rnn"), UnsupportedLayerError, ["arch.kind", "'rnn'"]),
    ("input-shape", _set("arch.input_shape", [0]), ModelFileError, ["arch.input_shape", "[0]"]),
    ("conv-stride", lambda ck: ck["arch"]["layers"].insert(0, {"type": "cuba_lif_conv", "out_channels": 2,
                                                               "kernel": 3, "stride": 0}),
     ModelFileError, ["layer 0", "'stride'"]),
    ("nan-weight", _sd("layers.1.syn.weight", _nan_at_end), ModelFileError, ["layers.1.syn.weight", "NaN"]),
    ("inf-theta", _sd("layers.2.theta_base", lambda t: t * float("inf")), ModelFileError,
     ["layers.2.theta_base", "Inf"]),
    ("negative-theta", _sd("layers.0.theta_base", lambda t: -t), ModelFileError,
     ["layers.0 threshold", "theta_base", "positive"]),
    ("int-weight", _sd("layers.0.syn.weight", lambda t: t.long()), ModelFileError,
     ["layers.0.syn.weight", "torch.int64"]),
    ("complex-weight", _sd("layers.0.syn.weight", lambda t: t.to(torch.complex64)), ModelFileError,
     ["layers.0.syn.weight", "complex64"]),
    ("sparse-weight", _sd("layers.1.syn.weight", lambda t: t.to_sparse()), ModelFileError,
     ["layers.1.syn.weight", "dense float"]),
    ("theta-shape", _sd("layers.1.theta_base", lambda t: t[:-1]), ModelFileError,
     ["layers.1.theta_base", "expected"]),
    ("weight-not-tensor", _sd("layers.0.syn.weight", lambda t: t.tolist()), ModelFileError,
     ["layers.0.syn.weight", "list"]),
    ("overflowing-scale", _sd("regulator.log_s", lambda t: t + 1e4), ModelFileError,
     ["layers.0 threshold", "AHSAR scale"]),
    ("nan-regulator", _sd("regulator.h", lambda t: t * float("nan")), ModelFileError,
     ["regulator.h", "NaN"]),
    ("extra-entry", lambda ck: ck["state_dict"].__setitem__("layers.0.syn.bias", torch.zeros(3)),
     UnsupportedLayerError, ["layers.0.syn.bias"]),
    ("missing-entry", lambda ck: ck["state_dict"].pop("regulator.log_g"), ModelFileError,
     ["regulator.log_g"]),
    ("int-key", lambda ck: ck["state_dict"].__setitem__(3, torch.zeros(1)), ModelFileError,
     ["state_dict keys"]),
    ("i_decay-range", _set("neuron.i_decay", 5000), ModelFileError, ["neuron.i_decay", "5000"]),
    ("v_decay-bool", _set("neuron.v_decay", True), ModelFileError, ["'v_decay'"]),
    ("reset-mode", _set("neuron.reset", "subtract"), UnsupportedLayerError, ["reset mode", "subtract"]),
    ("neuron-model", _set("neuron.model", "alif"), UnsupportedLayerError, ["neuron model", "alif"]),
    ("method-tensor", _set("method", torch.ones(2, 2)), ModelFileError, ["method", "a Tensor"]),
    ("config-control", _set("regulator.config.control", "magic"), ModelFileError,
     ["regulator.config", "control", "magic"]),
    ("config-string", _set("regulator.config.r_lo", "0.1"), ModelFileError, ["regulator.config", "r_lo"]),
    ("config-unknown", _set("regulator.config.zeta", 1.0), ModelFileError, ["zeta"]),
    ("regulator-type", _set("regulator", "AHSAR"), ModelFileError, ["regulator"]),
    ("steps-zero", _set("data.steps", 0), ModelFileError, ["data.steps"]),
    ("steps-huge", _set("data.steps", 10 ** 9), ModelFileError, ["data.steps", "1000000000"]),
    ("encoding", _set("data.encoding", "morse"), ModelFileError, ["data.encoding", "morse"]),
    ("n_features", _set("data.n_features", 65), ModelFileError, ["data.n_features", "65"]),
    ("dataset-name", _set("data.name", None), ModelFileError, ["data", "'name'"]),
    ("version-tensor", _set("version", torch.ones(3)), ModelFileError, ["version", "a Tensor"]),
    ("format", _set("format", "other"), ModelFileError, ["not an ahsar-deploy checkpoint"]),
    ("no-data", lambda ck: ck.pop("data"), ModelFileError, ["'data'"]),
    ("test_accuracy", _set("test_accuracy", float("nan")), ModelFileError, ["test_accuracy"]),
    ("test_rates", _set("test_rates", ["high"]), ModelFileError, ["test_rates"]),
    ("history", _set("history", [{"epoch": "one"}]), ModelFileError, ["history[0]"]),
    ("history-gain", _set("history", [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5,
                                       "rates": [0.1], "gain": 1.0}]), ModelFileError, ["history[0]", "'scales'"]),
]


@pytest.mark.parametrize("mutate,cls,words", [b[1:] for b in BAD_FIELDS], ids=[b[0] for b in BAD_FIELDS])
def test_bad_field_is_refused_by_name(mutate, cls, words, make_ckpt, tmp_path, capsys):
    ck = make_ckpt([64, 12, 8, 10])
    mutate(ck)
    path = tmp_path / "m.pt"
    torch.save(ck, path)
    with pytest.raises(cls) as e:
        build.export(path, "loihi", tmp_path / "out", calib_samples=8, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for w in words:
        assert w in msg, msg
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]
    code = cli.main(["inspect", str(path), "-q"])   # refuses it too, or summarises it: no crash
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code in (0, 1) and len(err) == code, err


def test_unmodified_checkpoint_exports(make_ckpt, tmp_path):
    """The mutations above are what makes them fail: the same file unmutated exports."""
    torch.save(make_ckpt([64, 12, 8, 10]), tmp_path / "m.pt")
    m = build.export(tmp_path / "m.pt", "loihi", tmp_path / "out", calib_samples=8, progress=False)
    assert [l["n_out"] for l in m["layers"]] == [12, 8, 10]


class RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_code_in_state_dict_is_not_run(make_ckpt, tmp_path, protocol):
    """A payload deep inside an otherwise valid checkpoint, loaded in-process."""
    marker = tmp_path / "ran"
    ck = make_ckpt([64, 12, 10])
    ck["state_dict"]["layers.0.theta_base"] = RunsCode(marker)
    torch.save(ck, tmp_path / "evil.pt", pickle_protocol=protocol)
    with pytest.raises(ModelFileError, match="weights-only"):
        build.export(tmp_path / "evil.pt", "loihi", tmp_path / "out", progress=False)
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- --calib FILE.npy

@pytest.fixture(scope="module")
def calib_model(tmp_path_factory, make_ckpt):
    path = tmp_path_factory.mktemp("calib") / "m.pt"
    torch.save(make_ckpt([64, 16, 10], steps=6), path)
    return path


def test_calib_file_matches_training_split(calib_model, tmp_path):
    """(N, F) intensities and their (N, T, F) spikes calibrate exactly as the default."""
    x = data.load("digits").train.x[:40]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "s.npy", data.encode(x, 6).astype(bool))
    build.export(calib_model, "loihi", tmp_path / "ref", calib_samples=40, progress=False)
    build.export(calib_model, "loihi", tmp_path / "a", calib=tmp_path / "x.npy", progress=False)
    build.export(calib_model, "loihi", tmp_path / "b", calib=tmp_path / "s.npy", calib_samples=40,
                 progress=False)
    ref = (tmp_path / "ref" / "model.net").read_bytes()
    assert (tmp_path / "a" / "model.net").read_bytes() == ref
    assert (tmp_path / "b" / "model.net").read_bytes() == ref
    import json
    cal = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert cal["split"] == "file[:40]" and cal["file"]["name"] == "x.npy"
    assert cal["file"]["sha256"] == checkpoint.sha256(tmp_path / "x.npy")


BAD_CALIB = [
    ("missing", None, "no such file"),
    ("wrong-features", np.zeros((5, 63)), "shape (5, 63)"),
    ("wrong-steps", np.zeros((5, 7, 64)), "shape (5, 7, 64)"),
    ("empty", np.zeros((0, 64)), "shape (0, 64)"),
    ("4-d", np.zeros((2, 6, 64, 1)), "shape (2, 6, 64, 1)"),
    ("strings", np.full((3, 64), "a"), "not numeric"),
    ("complex", np.zeros((3, 64), complex), "not numeric"),
    ("nan", np.full((3, 64), np.nan), "finite"),
    ("above-one", np.full((3, 64), 2.0), "[0, 1]"),
    ("negative", -np.ones((3, 64)), "[0, 1]"),
    ("spike-two", np.full((3, 6, 64), 2, np.uint8), "0 or 1"),
    ("object", np.array([None] * 64, dtype=object).reshape(1, 64), "not a readable"),
]


@pytest.mark.parametrize("arr,words", [b[1:] for b in BAD_CALIB], ids=[b[0] for b in BAD_CALIB])
def test_bad_calibration_data(arr, words, calib_model, tmp_path):
    f = tmp_path / "c.npy"
    if arr is not None:
        np.save(f, arr, allow_pickle=True)
    with pytest.raises(DatasetError) as e:
        build.export(calib_model, "loihi", tmp_path / "out", calib=f, progress=False)
    assert words in str(e.value) and "calibration data" in str(e.value), str(e.value)
    assert not (tmp_path / "out").exists()


def test_truncated_and_npz_calibration(calib_model, tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((100, 64)))
    raw = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:len(raw) // 2])
    (tmp_path / "head.npy").write_bytes(raw[:20])
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 64)))
    for name, words in (("cut.npy", "not a readable"), ("head.npy", "not a readable"),
                        ("c.npz", "npz")):
        with pytest.raises(DatasetError, match=words):
            build.export(calib_model, "loihi", tmp_path / "out", calib=tmp_path / name, progress=False)
    assert not (tmp_path / "out").exists()


def test_pickled_calibration_runs_no_code(calib_model, tmp_path):
    marker = tmp_path / "ran"
    np.save(tmp_path / "evil.npy", np.array([RunsCode(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="not a readable"):
        build.export(calib_model, "loihi", tmp_path / "out", calib=tmp_path / "evil.npy", progress=False)
    assert not marker.exists()


# ---------------------------------------------------------------- chip limits, CLI paths

def _main(capsys, *args):
    """The CLI in-process: (exit code, stderr lines)."""
    code = cli.main([str(a) for a in args])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return code, err


def _export_refused(capsys, tmp_path, ckpt, *args) -> str:
    """Export `ckpt` through the CLI; assert it fails with exit 1, one stderr line and
    no build directory; return that line."""
    torch.save(ckpt, tmp_path / "m.pt")
    code, err = _main(capsys, "export", tmp_path / "m.pt", *args, "-o", tmp_path / "b", "-q")
    assert code == 1 and len(err) == 1, err
    assert not (tmp_path / "b").exists()
    return err[0]


def test_network_too_wide_for_a_core(make_ckpt, tmp_path, capsys):
    err = _export_refused(capsys, tmp_path, make_ckpt([64, 4097, 10]))
    assert "layer1" in err and "fan-in 4097" in err and "4096" in err


def test_network_needs_more_cores_than_the_chip(make_ckpt, tmp_path, capsys, monkeypatch):
    import dataclasses

    import hw_targets
    small = dataclasses.replace(hw_targets.LOIHI, name="loihi-2core", cores=2, chips_per_system=1)
    monkeypatch.setitem(hw_targets.TARGETS, small.name, small)
    err = _export_refused(capsys, tmp_path, make_ckpt([64, 12, 8, 10]), "--target", "loihi-2core")
    assert "needs 3 cores, loihi-2core has 2" in err, err


def test_threshold_out_of_range_after_calibration(make_ckpt, tmp_path, capsys):
    """Weights 10^4 times the threshold: the integer threshold rounds to 0."""
    err = _export_refused(capsys, tmp_path, make_ckpt([64, 12, 10], weight_scale=1e5))
    assert "layer0" in err and "threshold mantissa 0" in err and "131071" in err


def test_decay_out_of_range_for_the_chip(make_ckpt, tmp_path, capsys, monkeypatch):
    """i_decay 0 is a valid float model but not a Loihi current decay (du = -1): refused
    before calibration, since the decay is known from the model alone."""
    from ahsar_deploy import build

    def calibrate(*a, **k):
        raise AssertionError("calibrated before the decay was checked")

    monkeypatch.setattr(build, "calibrate", calibrate)
    err = _export_refused(capsys, tmp_path, make_ckpt([64, 12, 10], i_decay=0))
    assert "layer0" in err and "current decay" in err and "i_decay=0" in err


def test_output_parent_is_a_file(make_ckpt, tmp_path, capsys):
    torch.save(make_ckpt([64, 12, 10]), tmp_path / "m.pt")
    (tmp_path / "f").write_text("x")
    code, err = _main(capsys, "export", tmp_path / "m.pt", "-o", tmp_path / "f" / "b", "-q")
    assert code == 1 and len(err) == 1 and "cannot create the build directory" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["f", "m.pt"]


def test_bad_arguments_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "m.pt", "--calib-samples", "many"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2 and len(err) == 1 and "--calib-samples" in err[0], err
    code, err = _main(capsys, "export", tmp_path / "m.pt", "--calib-samples", "0", "-o", tmp_path / "b")
    assert code == 1 and "--calib-samples 0: must be a whole number of calibration samples, at least 1" in err[0]


def test_calib_errors_through_cli(calib_model, tmp_path, capsys):
    code, err = _main(capsys, "export", calib_model, "--calib", tmp_path / "none.npy", "-o", tmp_path / "b")
    assert code == 1 and len(err) == 1 and "none.npy: no such file" in err[0], err
    np.save(tmp_path / "c.npy", np.zeros((4, 5, 64)))
    code, err = _main(capsys, "export", calib_model, "--calib", tmp_path / "c.npy", "-o", tmp_path / "b")
    assert code == 1 and len(err) == 1 and "(N, 6, 64) spikes" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["c.npy"]


def test_unexpected_failure_is_still_one_line(make_ckpt, tmp_path, capsys, monkeypatch):
    """A bug (not bad input) is reported in one line with exit 2, not a traceback."""
    torch.save(make_ckpt([64, 12, 10]), tmp_path / "m.pt")
    monkeypatch.setattr(build, "calibrate", lambda *a, **k: 1 / 0)
    monkeypatch.delenv("AHSAR_DEBUG", raising=False)
    code, err = _main(capsys, "export", tmp_path / "m.pt", "-o", tmp_path / "b", "-q")
    assert code == 2 and len(err) == 1 and "internal error: ZeroDivisionError" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


# ---------------------------------------------------------------- .nir model files

def test_nir_model_files_are_untrusted_too(tmp_path):
    """.nir files are untrusted like .pt files: the well-formed graph exports; each
    malformed one (NaN weight, negative threshold, truncated, junk) is refused with a
    DeployError and leaves nothing."""
    import nir
    n = 4
    good = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([64])),
               "fc": nir.Linear(weight=np.full((n, 64), 0.1, np.float32)),
               "lif": nir.CubaLIF(tau_syn=np.full(n, 4e-3), tau_mem=np.full(n, 8e-3), r=np.full(n, 8.0),
                                  v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n),
                                  w_in=np.full(n, 4.0)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    nir.write(str(tmp_path / "good.nir"), good)
    build.export(tmp_path / "good.nir", "loihi", tmp_path / "ok", progress=False,
                 dataset="digits", steps=4)
    assert (tmp_path / "ok" / "model.net").is_file()
    bad = {}
    g = good
    g.nodes["fc"].weight[0, 0] = np.nan
    nir.write(str(tmp_path / "nan.nir"), g)
    bad["nan.nir"] = (tmp_path / "nan.nir").read_bytes()
    g.nodes["fc"].weight[0, 0] = 0.1
    g.nodes["lif"].v_threshold[:] = -1.0
    nir.write(str(tmp_path / "neg.nir"), g)
    bad["neg.nir"] = (tmp_path / "neg.nir").read_bytes()
    bad["cut.nir"] = bad["nan.nir"][:len(bad["nan.nir"]) // 2]
    bad["junk.nir"] = b"\x89HDF\r\n\x1a\n" + b"\x00" * 64
    for name, raw in bad.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(DeployError):
            build.export(tmp_path / name, "loihi", tmp_path / "out", progress=False,
                         dataset="digits", steps=4)
        assert not (tmp_path / "out").exists()


def test_files_users_bring_first_get_a_way_forward(tmp_path, cli):
    """A plain state_dict or a library checkpoint points to the NIR route; a pickled module
    is refused in a whole sentence that says why; a netx HDF5 file named .pt says what it is."""
    import h5py
    net = torch.nn.Sequential(torch.nn.Linear(64, 10))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, tmp_path / "lib.pt")
    torch.save(net, tmp_path / "module.pt")
    with h5py.File(tmp_path / "net.pt", "w") as f:
        f.create_group("layer")
    for name, want in [("sd.pt", "a state_dict or another library's checkpoint?"),
                       ("lib.pt", "export your network to NIR (snnTorch export_to_nir"),
                       ("module.pt", "pickled Python object (torch.nn.modules.container.Sequential), which is "
                                     "never unpickled here since that could run code"),
                       ("net.pt", "an HDF5 file (a lava-dl netx network?)")]:
        r = cli("export", tmp_path / name, "-o", tmp_path / "b")
        assert r.returncode == 1 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.rstrip().endswith((".nir file", "as it is", ".nir file)")), r.stderr
