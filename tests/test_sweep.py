"""`ahsar sweep` (ahsar_deploy/sweep.py): a grid of training trials run as Ray tasks gives
the results of running them one by one, bit for bit; a sweep run again runs only the
trials it misses; a bad config is one line naming the key and the file, and nothing is
written; a signal leaves the finished trials whole and nothing half-written.

One local Ray instance serves the module (starting one takes seconds); the trials are
tiny (digits, 120 training samples, 64-8-10, 4 steps, 1 epoch).
"""
import json
import shutil
import signal
from types import SimpleNamespace

import pytest
import torch

from ahsar_deploy import interrupts
from ahsar_deploy import sweep as sw
from ahsar_deploy.errors import ConfigError

TINY = """[sweep]
data = "digits"
epochs = 1
train-samples = 120
hidden = [8]
steps = 4
seeds = [0]
method = ["baseline", "ahsar"]
"""


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (sweep() uses a session it finds and leaves it
    running); shut down, with whatever it started, when the module is done."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    assert sw._ray_init(ray, None, 2)   # also puts back this process's signal handlers
    try:
        yield ray
    finally:
        sw._ray_shutdown(ray)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_session):
    """The TINY grid run one by one in this process, and as Ray tasks."""
    base = tmp_path_factory.mktemp("sweep")
    config = base / "sweep.toml"
    config.write_text(TINY)
    serial = sw.sweep(config, base / "serial", serial=True, progress=False)
    on_ray = sw.sweep(config, base / "ray", progress=False)
    return SimpleNamespace(config=config, base=base, serial=serial, ray=on_ray)


def _without_time(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "train_seconds"}


def _assert_same_checkpoint(a, b):
    ca, cb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    sa, sb = ca.pop("state_dict"), cb.pop("state_dict")
    assert ca == cb   # history, thresholds, accuracies, rates, regulator state, ...
    assert sa.keys() == sb.keys()
    for k in sa:   # bitwise, not within a tolerance
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        assert sa[k].numpy().tobytes() == sb[k].numpy().tobytes(), k


def test_ray_equals_serial_bitwise(runs):
    s, r = runs.serial, runs.ray
    assert [t["name"] for t in s["trials"]] == ["seed=0 method=baseline", "seed=0 method=ahsar"]
    assert s["reused"] == r["reused"] == [] and s["ran"] == r["ran"] == [t["id"] for t in s["trials"]]
    assert s["runner"] == "serial" and r["runner"] == "local Ray"
    for a, b in zip(s["trials"], r["trials"]):
        assert _without_time(a) == _without_time(b)   # accuracies, rates, val curves: exactly
        assert 0.0 <= a["test_accuracy"] <= 1.0 and len(a["test_rates"]) == 2
        _assert_same_checkpoint(runs.base / "serial" / a["checkpoint"], runs.base / "ray" / b["checkpoint"])
        stored = json.loads((runs.base / "ray" / "trials" / f"{b['id']}.json").read_text())
        assert stored == b
    md = (runs.base / "ray" / "sweep.md").read_text()
    assert md.count("| seed=0 method=") == 2 and json.loads((runs.base / "ray" / "sweep.json").read_text()) == r


def test_resume_runs_only_the_missing_trial(runs, tmp_path, caplog):
    out = tmp_path / "resumed"
    shutil.copytree(runs.base / "ray", out)
    first, second = runs.ray["trials"]
    (out / "trials" / f"{second['id']}.json").unlink()
    kept = (out / "trials" / f"{first['id']}.pt").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="ahsar_deploy.sweep"):
        again = sw.sweep(runs.config, out, progress=False)
    assert again["reused"] == [first["id"]] and again["ran"] == [second["id"]]
    assert "2 trials, 1 reused" in caplog.text and "1 to run" in caplog.text
    assert [_without_time(t) for t in again["trials"]] == [_without_time(t) for t in runs.ray["trials"]]
    assert again["trials"][0]["train_seconds"] == first["train_seconds"]   # read back, not re-run
    assert (out / "trials" / f"{first['id']}.pt").stat().st_mtime_ns == kept
    _assert_same_checkpoint(out / second["checkpoint"], runs.base / "serial" / second["checkpoint"])
    # a stored result for other arguments is not reused
    path = out / "trials" / f"{first['id']}.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps(dict(stored, args=dict(stored["args"], epochs=2))))
    trial = sw.expand(runs.config)[0]
    assert sw._finished(out, trial, None) is None
    path.write_text(json.dumps(stored))
    assert sw._finished(out, trial, None) == stored


def test_expand_order_names_and_ids():
    trials = sw.expand({"data": "digits", "method": ["baseline", "ahsar"], "seeds": [0, 1], "hidden": "16"})
    assert [t.name for t in trials] == ["method=baseline seed=0", "method=baseline seed=1",
                                        "method=ahsar seed=0", "method=ahsar seed=1"]
    assert len({t.id for t in trials}) == 4 and all(len(t.id) == 12 for t in trials)
    same = sw.expand({"sweep": {"data": "digits", "method": ["baseline", "ahsar"], "seed": [0, 1],
                                "hidden": [16]}})
    assert [t.id for t in same] == [t.id for t in trials]   # "16" and [16]; seed and seeds
    assert trials[0].args["hidden"] == [16] and trials[0].args["pool"] == "sum_pool"
    assert sw.Trial.make(trials[0].args).id == trials[0].id
    grid = sw.expand({"hidden": [[16], "32,8"], "lr": [0.001, 0.002]})
    assert [t.args["hidden"] for t in grid] == [[16], [16], [32, 8], [32, 8]]


def test_ids_hash_only_what_differs_from_the_defaults():
    """A value given at train()'s default trains the same network: same id. So does an
    AHSAR config object equal to what ahsar_set names; a new train() option given at its
    default therefore leaves every existing id alone."""
    from ahsar_deploy.regulator import AHSARConfig
    plain = sw.Trial.make({"data": "digits", "method": "ahsar"})
    assert sw.Trial.make({"data": "digits", "method": "ahsar", "seed": 0, "epochs": 30, "bias": False}).id == plain.id
    low = sw.expand({"data": "digits", "method": "ahsar", "ahsar_set": ["r_lo=0.02,r_hi=0.1", "eta_g=0"]})
    assert [t.args["ahsar_set"] for t in low] == ["r_lo=0.02,r_hi=0.1", "eta_g=0"]
    assert len({plain.id, *(t.id for t in low)}) == 3
    obj = sw.Trial.make({"data": "digits", "method": "ahsar", "ahsar": AHSARConfig(eta_g=0.0)})
    assert obj.args["ahsar_set"] == "eta_g=0" and obj.args["control"] is None
    assert sw.Trial.make({"data": "digits", "method": "ahsar", "ahsar": AHSARConfig()}).id == plain.id
    same = sw.expand({"data": "digits", "method": "ahsar",
                      "ahsar_set": ["energy=0.5", "energy=0.50", "s_min=0.25 , energy=0.5"]})
    assert len(same) == 1 and same[0].args["ahsar_set"] == "energy=0.5"   # one network, trained once
    assert sw.Trial.make({"data": "digits", "method": "ahsar", "ahsar": AHSARConfig(energy=0.5)}).id == \
        sw.Trial.make({"data": "digits", "method": "ahsar", "ahsar_set": "s_min=0.25,energy=0.50"}).id
    for default in ({"control": "integral"}, {"ahsar_set": "energy=0"}, {"ahsar_set": ""}):
        assert sw.Trial.make({"data": "digits", "method": "ahsar", **default}).id == plain.id, default


BAD = [
    ("bad.toml", '[sweep]\nepoch = 3\n', "unknown key 'epoch'", "did you mean 'epochs'"),
    ("bad.toml", '[sweep]\nepochs = "3"\n', "epochs", "is a string"),
    ("bad.toml", '[sweep]\nseeds = []\n', "seeds", "empty grid"),
    ("bad.toml", '[sweep]\nmethod = ["ahsar", "ahsr"]\n', "method[1]", "did you mean 'ahsar'"),
    ("bad.toml", '[sweep]\nepochs = \n', "not valid TOML", "line 2"),
    ("bad.toml", 'epochs = 3\n', "no [sweep] table", "[sweep]"),
    ("bad.json", '{"sweep": {"lr": true}}', "lr", "is a boolean"),
    ("bad.toml", '[sweep]\nmethod = ["baseline", "ahsar"]\ncontrol = "proportional"\n', "control", "baseline"),
    ("bad.toml", '[sweep]\nmethod = ["baseline", "ahsar"]\nahsar_set = "eta_g=0"\n', "ahsar_set", "baseline"),
    ("bad.toml", '[sweep]\nahsar-set = "r_lo=0.3"\n', "ahsar_set", "r_lo < r_hi"),
    ("bad.toml", '[sweep]\nahsar-set = "band=1"\n', "ahsar_set", "KEY one of r_lo"),
    ("bad.toml", '[sweep]\nahsar-set = ["energy=0.5", "energy=2"]\n', "ahsar_set[1] = 'energy=2'", "outside [0, 1]"),
    ("bad.toml", '[sweep]\ncontrol = "proportional"\nahsar-set = "control=integral"\n', "ahsar_set", "given twice"),
    ("bad.toml", '[sweep]\nhidden = [[16], [0]]\n', "hidden[1]", "size <= 0"),
    ("bad.toml", '[sweep]\ndata = "nope.npz"\n', "data", "neither a built-in"),
    ("bad.toml", '[sweep]\nlr-schedule = "cosine"\nlr_schedule = "constant"\n', "'lr-schedule' and 'lr_schedule'",
     "same option"),
    ("bad.toml", '[sweep]\nseed = 0\nseeds = [1]\n', "'seed' and 'seeds'", "same option"),
]


@pytest.mark.parametrize("name,text,words", [(b[0], b[1], b[2:]) for b in BAD], ids=[f"{b[0]}:{b[2]}" for b in BAD])
def test_bad_config_is_one_line_naming_key_and_file(tmp_path, cli_inproc, error_line, name, text, words):
    config = tmp_path / name
    config.write_text(text)
    code, out, err = cli_inproc("sweep", config, "-o", tmp_path / "out", "-q")
    line = error_line(SimpleNamespace(returncode=code, stderr=err))
    assert line.startswith("ahsar sweep: error: ") and str(config) in line, line
    for w in words:
        assert w in line, line
    assert not (tmp_path / "out").exists() and out == ""
    with pytest.raises(ConfigError):
        sw.expand(config)


def test_bad_config_through_the_installed_cli(tmp_path, cli, error_line):
    config = tmp_path / "grid.toml"
    config.write_text('[sweep]\nmethod = ["ahsar"]\nepochs = [2, 0]\n')
    line = error_line(cli("sweep", config, "-o", tmp_path / "out"))
    assert "grid.toml: epochs[1] = 0 is below 1" in line
    assert not (tmp_path / "out").exists()


def test_a_trial_train_refuses_is_one_line_naming_it(tmp_path, cli_inproc, error_line):
    config = tmp_path / "cnn.toml"
    config.write_text('[sweep]\narch = "cnn"\nneuron = ["loihi", "xylo"]\nepochs = 1\ntrain_samples = 64\n'
                      'channels = "2"\nsteps = 2\n')
    code, out, err = cli_inproc("sweep", config, "-o", tmp_path / "out", "--serial", "-q")
    line = error_line(SimpleNamespace(returncode=code, stderr=err))
    assert "trial neuron=xylo (" in line and "not cnn" in line, line
    assert len(list((tmp_path / "out" / "trials").glob("*.json"))) == 1   # the loihi trial is kept
    code, out, err = cli_inproc("sweep", config, "-o", tmp_path / "out", "--serial", "--address", "auto")
    assert "--serial runs the trials here without Ray" in error_line(SimpleNamespace(returncode=code, stderr=err))


def test_an_address_where_nothing_listens_is_one_line(tmp_path, cli, error_line):
    """ray.init would retry such an address for minutes; a closed loopback port is refused at once."""
    import socket
    with socket.socket() as s:   # a port that was free a moment ago, closed again
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "one.toml"
    config.write_text('[sweep]\nepochs = 1\n')
    line = error_line(cli("sweep", config, "-o", tmp_path / "out", "--address", f"127.0.0.1:{port}"))
    assert f"--address 127.0.0.1:{port}: nothing answers" in line, line
    assert not (tmp_path / "out").exists()


def test_cli_json_reuses_a_finished_sweep(runs, cli_inproc):
    code, out, err = cli_inproc("sweep", runs.config, "-o", runs.base / "ray", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["ran"] == [] and d["reused"] == runs.ray["ran"] and "2 trials, 2 reused" in err


@pytest.mark.parametrize("serial", [True, False], ids=["serial", "ray"])
def test_signal_keeps_finished_trials_whole(runs, tmp_path, installed, serial):
    """SIGTERM as the first trial finishes (the CLI's handlers installed): Interrupted with
    exit code 143, the first trial's two files complete, nothing of the other, no
    temporary file, no sweep.json; the same sweep then resumes with one trial to run.
    Last in the module: on Ray the other trial is cancelled by killing its worker."""
    out = tmp_path / "cut"
    seen = []

    def on_result(result):
        seen.append(result["id"])
        signal.raise_signal(signal.SIGTERM)   # recorded; the sweep stops at its next check

    with pytest.raises(interrupts.Interrupted) as e:
        sw.sweep(runs.config, out, serial=serial, progress=False, on_result=on_result)
    assert e.value.exit_code == 143 and len(seen) == 1
    assert sorted(p.name for p in (out / "trials").iterdir()) == [f"{seen[0]}.json", f"{seen[0]}.pt"]
    assert not (out / "sweep.json").exists() and not (out / "sweep.md").exists()
    stored = json.loads((out / "trials" / f"{seen[0]}.json").read_text())
    ref = next(t for t in runs.serial["trials"] if t["id"] == seen[0])
    assert _without_time(stored) == _without_time(ref)
    _assert_same_checkpoint(out / stored["checkpoint"], runs.base / "serial" / ref["checkpoint"])
