"""Command line: the pipeline end to end, and bad input (one line, non-zero, nothing written)."""
import json
import os
import shutil

import torch


def assert_one_line_error(r, *words):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_export_run_energy_json(small_model, tmp_path, cli):
    out = tmp_path / "b"
    r = cli("export", small_model, "--target", "loihi", "-o", out, "--json", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == "loihi"
    r = cli("run", out, "--backend", "emulator", "--data", "digits", "--samples", "40", "--json", "-q")
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["samples"] == 40 and 0.5 < run["accuracy"] <= 1.0
    r = cli("energy", out, "--backend", "emulator", "--samples", "40", "--json", "-q")
    assert r.returncode == 0, r.stderr
    energy = json.loads(r.stdout)
    assert energy["total_j_per_inference"] > 0
    assert [l["spikes"] for l in energy["layers"]] == [c["spikes"] for c in run["counters"]]
    r = cli("inspect", out)
    assert r.returncode == 0 and "vth" in r.stdout


def test_missing_model(tmp_path, cli):
    r = cli("export", tmp_path / "nope.pt", "-o", tmp_path / "b")
    assert_one_line_error(r, "nope.pt", "no such model file")
    assert not (tmp_path / "b").exists()


def test_corrupt_model(tmp_path, cli):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04not a checkpoint at all")
    r = cli("export", bad, "-o", tmp_path / "b")
    assert_one_line_error(r, "bad.pt", "not a loadable")
    assert os.listdir(tmp_path) == ["bad.pt"]


def test_truncated_model(small_model, tmp_path, cli):
    bad = tmp_path / "cut.pt"
    bad.write_bytes(small_model.read_bytes()[:2000])
    assert_one_line_error(cli("export", bad, "-o", tmp_path / "b"), "cut.pt")
    assert not (tmp_path / "b").exists()


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_checkpoint_is_refused(tmp_path, cli):
    marker = tmp_path / "pwned"
    Exploit.marker = marker
    evil = tmp_path / "evil.pt"
    torch.save({"format": "ahsar-deploy.checkpoint", "x": Exploit()}, evil, pickle_protocol=2)
    r = cli("export", evil, "-o", tmp_path / "b")
    assert_one_line_error(r, "evil.pt", "weights-only")
    assert not marker.exists(), "unpickling executed code"


def test_unknown_target(small_model, tmp_path, cli):
    r = cli("export", small_model, "--target", "loihi9", "-o", tmp_path / "b")
    assert_one_line_error(r, "loihi9", "loihi")
    assert not (tmp_path / "b").exists()


def test_unsupported_layer(small_model, tmp_path, cli):
    ckpt = torch.load(small_model, weights_only=True)
    ckpt["arch"]["layers"][1]["type"] = "conv2d"
    bad = tmp_path / "conv.pt"
    torch.save(ckpt, bad)
    r = cli("export", bad, "-o", tmp_path / "b")
    assert_one_line_error(r, "layer 1", "conv2d")
    assert not (tmp_path / "b").exists()


def test_nan_weight(small_model, tmp_path, cli):
    ckpt = torch.load(small_model, weights_only=True)
    ckpt["state_dict"]["layers.0.syn.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    assert_one_line_error(cli("export", bad, "-o", tmp_path / "b"), "layers.0.syn.weight", "NaN")


def test_existing_build_kept_without_force(small_model, small_build, tmp_path, cli):
    before = (small_build / "model.net").read_bytes()
    r = cli("export", small_model, "-o", small_build)
    assert_one_line_error(r, "exists", "--force")
    assert (small_build / "model.net").read_bytes() == before


def test_unknown_backend_and_not_a_build(small_build, tmp_path, cli):
    assert_one_line_error(cli("run", small_build, "--backend", "tpu"), "tpu", "lava")
    assert_one_line_error(cli("run", tmp_path, "--backend", "lava"), "not a build directory")




def test_train_cli_writes_checkpoint_with_options(tmp_path, cli):
    """`ahsar train` end to end on a few digits samples: the checkpoint loads back
    (weights_only) with the options it was trained with; bad options fail in one line."""
    from ahsar_deploy import checkpoint
    out = tmp_path / "m.pt"
    r = cli("train", "--data", "digits", "--hidden", "16", "--steps", "4", "--epochs", "2",
            "--train-samples", "200", "--augment-shift", "1", "--lr-schedule", "cosine",
            "-o", out, "--json", "-q")
    assert r.returncode == 0, r.stderr
    ckpt = checkpoint.load(out)
    assert ckpt["train"]["augment_shift"] == 1 and ckpt["train"]["lr_schedule"] == "cosine"
    assert [len(h["rates"]) for h in ckpt["history"]] == [2, 2]
    assert json.loads(r.stdout)["test_accuracy"] == ckpt["test_accuracy"]
    r = cli("inspect", out)
    assert r.returncode == 0 and "augment_shift 1" in r.stdout and "lr_schedule 'cosine'" in r.stdout
    bad = tmp_path / "bad.pt"
    r = cli("train", "--data", "digits", "--hidden", "8", "--steps", "4", "--epochs", "1", "--train-samples", "100",
            "--ahsar-set", "r_lo=0.02,r_hi=0.1,eta_g=0", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert {k: checkpoint.load(out)["regulator"]["config"][k] for k in ("r_lo", "r_hi", "eta_g")} == \
        {"r_lo": 0.02, "r_hi": 0.1, "eta_g": 0.0}
    assert "AHSAR settings: r_lo=0.02,r_hi=0.1,eta_g=0" in cli("inspect", out).stdout
    shown = json.loads(cli("inspect", out, "--json").stdout)["ahsar"]
    assert shown["settings"] == "r_lo=0.02,r_hi=0.1,eta_g=0" and shown["config"]["r_lo"] == 0.02
    assert_one_line_error(cli("train", "--ahsar-set", "band=1", "-o", bad), "--ahsar-set", "KEY one of r_lo")
    assert_one_line_error(cli("train", "--method", "baseline", "--ahsar-set", "eta_g=0", "-o", bad),
                          "--ahsar-set applies to AHSAR")
    assert_one_line_error(cli("train", "--augment-shift", "-1", "-o", bad), "--augment-shift")
    assert_one_line_error(cli("train", "--epochs", "0", "-o", bad), "--epochs")
    assert not bad.exists()


def test_damaged_spike_cache_is_ignored_and_run_again(small_build, tmp_path, cli_inproc):
    """`ahsar energy` reuses spikes-BACKEND.npz only when it fits the build; a damaged or
    forged one gets a warning and a new run, never a wrong estimate."""
    import numpy as np
    out = tmp_path / "b"
    shutil.copytree(small_build, out)
    code, _, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "20", "-q")
    assert code == 0, err
    cache = out / "spikes-emulator.npz"
    with np.load(cache) as f:
        good = {k: f[k] for k in f.files}
    _, stdout, _ = cli_inproc("energy", out, "--backend", "emulator", "--samples", "20", "--json", "-q")
    want = json.loads(stdout)["total_j_per_inference"]
    forged = [
        {**good, "keys": good["keys"].astype("S8")},                     # wrong key width
        {**good, "layer0": good["layer0"][:, :1]},                       # too few steps
        {k: v for k, v in good.items() if k != "layer1"},                # a layer missing
        {**good, "layer9": good["layer0"]},                              # a layer too many
        {**good, "layer0": good["layer0"].astype(np.int16)},             # not packed bits
    ]
    for bad in forged:
        np.savez(cache, **bad)
        code, stdout, err = cli_inproc("energy", out, "--backend", "emulator", "--samples", "20", "--json")
        assert code == 0 and json.loads(stdout)["total_j_per_inference"] == want, err
        assert "warning: ignoring spikes-emulator.npz" in err, err
    cache.write_bytes(b"PK\x03\x04 not a zip")
    code, stdout, err = cli_inproc("energy", out, "--backend", "emulator", "--samples", "20", "--json")
    assert code == 0 and json.loads(stdout)["total_j_per_inference"] == want, err
    assert "warning: ignoring spikes-emulator.npz" in err, err


def test_run_compares_with_reference_predictions(small_build, tmp_path, cli_inproc):
    """--reference: predictions of the user's own framework on the same samples."""
    import numpy as np
    out = tmp_path / "b"
    shutil.copytree(small_build, out)
    _, stdout, _ = cli_inproc("run", out, "--backend", "emulator", "--samples", "30", "--json", "-q")
    pred = np.array(json.loads(stdout)["predictions"])
    ref = pred.copy()
    ref[:6] = (ref[:6] + 1) % 10             # 6 of 30 disagree
    np.save(tmp_path / "ref.npy", np.concatenate([ref, np.zeros(5, dtype=ref.dtype)]))   # longer is fine
    code, stdout, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "30",
                                   "--reference", tmp_path / "ref.npy", "--json")
    assert code == 0, err
    assert json.loads(stdout)["reference"]["agreement"] == 24 / 30
    assert "same prediction on 80.00 % of the 30 samples" in err
    for bad, why in [(ref.astype(float), "integer class indices"), (ref[:10], "at least 30"),
                     (ref + 10, "outside 0..9"), (np.array([{"a": 1}] * 30, dtype=object), "not a readable")]:
        np.save(tmp_path / "bad.npy", bad, allow_pickle=True)
        code, _, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "30",
                                  "--reference", tmp_path / "bad.npy")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and why in lines[0], err


def test_run_compares_with_the_float_source_model_on_the_same_samples(small_model, small_build, tmp_path,
                                                                      cli_inproc, reseal):
    """The build keeps the float source model (source.npz): `ahsar run` reports its accuracy
    on the very samples it ran, the prediction agreement and per-layer spike agreement,
    each equal to running the checkpoint's own float graph here."""
    import numpy as np

    from ahsar_deploy import checkpoint, data, emulator
    out = tmp_path / "b"
    shutil.copytree(small_build, out)
    code, stdout, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "40", "--json")
    assert code == 0, err
    r = json.loads(stdout)
    graph = checkpoint.to_graph(small_model)
    ds = data.load("digits")
    x, y = data.encode(ds.test.x[:40], graph.steps, graph.encoding), ds.test.y[:40]
    ref = emulator.run(graph, x, integer=False)
    pred = ref[-1].sum(axis=1).argmax(axis=1)
    assert r["source"]["accuracy"] == np.mean(pred == y)
    assert r["source"]["prediction_agreement"] == np.mean(pred == np.array(r["predictions"]))
    assert [l["spikes_reference"] for l in r["source"]["layers"]] == [int(s.sum()) for s in ref]
    assert f"float source model: accuracy {100 * np.mean(pred == y):.2f} % on the same samples" in err
    # a damaged source.npz: one line, exit 1 (its sha256 differs from the manifest's; and
    # recorded as the build's own, load_source's own check); a build without one still runs, and says so
    (out / "source.npz").write_bytes(b"PK\x03\x04 not a zip")
    for why in ("source.npz: damaged or edited since the export", "source.npz: damaged (File is not a zip"):
        code, _, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "5")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and why in lines[0], err
        reseal(out)
    (out / "source.npz").unlink()
    reseal(out)
    code, _, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "5")
    assert code == 0 and "this build has no source.npz" in err, err


def test_export_reports_source_versus_build_on_validation(small_build):
    """calibration.json: float source model vs the kept build on the validation samples.
    The accuracies can differ by at most the share of samples whose prediction changed."""
    c = json.loads((small_build / "calibration.json").read_text())
    a, v = c["validation_accuracy"], c["validation_agreement"]
    assert 0 < v["prediction_agreement"] <= 1
    assert abs(a["float"] - a[a["chosen"]]) <= 1 - v["prediction_agreement"] + 1e-12
    assert [l["layer"] for l in v["layers"]] == [l["name"] for l in c["layers"]]
    assert all(0 < l["spike_agreement"] <= 1 and l["spikes_reference"] > 0 for l in v["layers"])
    fr = c["fidelity"]["free_running"]
    assert 0 < fr["prediction_agreement"] <= 1 and len(fr["layers"]) == len(c["layers"])


def test_energy_without_backend_uses_the_cached_run_and_names_it(small_build, tmp_path, cli_inproc):
    """No --backend: the cached emulator spikes of the same samples are priced (the file
    named), no Lava run starts; a subset comes from the cache too, and a superset runs only
    the missing samples, with the same estimate as running them all afresh."""
    out = tmp_path / "b"
    shutil.copytree(small_build, out, ignore=shutil.ignore_patterns("spikes-*", "run-*"))
    code, stdout, err = cli_inproc("run", out, "--backend", "emulator", "--samples", "25", "--json", "-q")
    assert code == 0, err
    acc = json.loads(stdout)["accuracy"]
    code, stdout, err = cli_inproc("energy", out, "--samples", "25", "--json", "-q")
    assert code == 0 and "spikes of 25 samples: 25 from spikes-emulator.npz, 0 run on emulator" in err, err
    rep = json.loads(stdout)
    assert rep["backend"] == "emulator" and rep["accuracy"] == acc and rep["samples"] == 25
    code, stdout, err = cli_inproc("energy", out, "--samples", "7", "--json", "-q")
    assert code == 0 and "spikes of 7 samples: 7 from spikes-emulator.npz, 0 run on emulator" in err, err
    assert json.loads(stdout)["samples"] == 7
    code, stdout, err = cli_inproc("energy", out, "--samples", "40", "--backend", "emulator", "--json", "-q")
    assert code == 0 and "spikes of 40 samples: 25 from spikes-emulator.npz, 15 run on emulator" in err, err
    merged = json.loads(stdout)
    fresh = tmp_path / "fresh"
    shutil.copytree(small_build, fresh, ignore=shutil.ignore_patterns("spikes-*", "run-*"))
    code, stdout, err = cli_inproc("energy", fresh, "--samples", "40", "--backend", "emulator", "--json", "-q")
    assert code == 0 and "0 from no cache, 40 run on emulator" in err, err
    assert json.loads(stdout)["layers"] == merged["layers"] and json.loads(stdout)["accuracy"] == merged["accuracy"]
    code, stdout, err = cli_inproc("energy", out, "--samples", "40", "--json", "-q")   # now all cached
    assert code == 0 and "40 from spikes-emulator.npz, 0 run" in err, err
