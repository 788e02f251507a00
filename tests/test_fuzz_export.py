"""Fuzzing `ahsar-export` with hypothesis: random small networks (some with a corrupted
field), and valid checkpoint files truncated or overwritten with junk bytes.

Every case must end in one of two ways: a complete build (all four files, loadable, runs
on the emulator) or a DeployError with nothing written. Corruptions that make a file
invalid must be refused. The cases run in-process through build.export (the function
behind `ahsar-export`), plus a few through the real `ahsar-export` command. The number
of cases run is asserted and printed (the README quotes it).
"""
import functools
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ahsar_deploy import build, data, emulator
from ahsar_deploy.data import ENCODINGS
from ahsar_deploy.snn import METHODS
from ahsar_deploy.errors import DeployError

N_NETWORKS = 200
N_FILES = 200
FUZZ = settings(max_examples=N_NETWORKS, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck), print_blob=True)

REQUIRED = ("format", "version", "arch", "neuron", "method", "state_dict", "data")
# corruption -> must it be refused? ("junk" replaces a field with a random value: maybe valid)
CORRUPTIONS = {"none": False, "nan": True, "inf": True, "shape": True, "int-dtype": True,
               "drop-key": True, "drop-entry": True, "negative-theta": True, "decay-range": True,
               "junk": False}
JUNK_PATHS = (("method",), ("version",), ("arch", "sizes"), ("arch", "layers"), ("neuron", "i_decay"),
              ("neuron", "reset"), ("data", "steps"), ("data", "name"), ("data", "encoding"),
              ("regulator",), ("test_rates",), ("history",), ("state_dict",))
junk_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=8),
    st.lists(st.integers(-3, 100), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(lambda n: torch.ones(n), st.integers(0, 3)))


@st.composite
def networks(draw):
    n_in = draw(st.sampled_from([64, 64, 64, 64, 63]))
    sizes = [n_in, *draw(st.lists(st.integers(1, 12), max_size=2)), draw(st.integers(1, 10))]
    decay = st.integers(0, 4096)
    spec = dict(sizes=sizes, steps=draw(st.integers(1, 6)), method=draw(st.sampled_from(METHODS)),
                encoding=draw(st.sampled_from(ENCODINGS)),
                i_decay=draw(decay), v_decay=draw(decay), seed=draw(st.integers(0, 2 ** 16)),
                weight_scale=draw(st.sampled_from([1.0, 0.05, 4.0, 1e-6, 0.0, 1e3, 1e30])))
    theta = draw(st.sampled_from([1.0, 0.3, 7.0, 1e-3, 1e-300]))
    corruption = draw(st.one_of(st.just("none"), st.sampled_from(sorted(CORRUPTIONS))))
    pick = draw(st.integers(0, 10 ** 6))
    junk = draw(junk_values) if corruption == "junk" else None
    return spec, theta, corruption, pick, junk


def _corrupt(ck, corruption, pick, junk):
    sd = ck["state_dict"]
    keys = sorted(sd)
    key = keys[pick % len(keys)]
    if corruption in ("nan", "inf"):
        if corruption == "inf" and key == "regulator.best_val_loss":   # +inf is its start value
            key = keys[0]
        t = sd[key].clone()
        t.view(-1)[pick % t.numel()] = float(corruption)
        sd[key] = t
    elif corruption == "shape":
        sd[key] = torch.cat([sd[key].reshape(-1), torch.zeros(1, dtype=sd[key].dtype)])
    elif corruption == "int-dtype":
        sd[key] = sd[key].long()
    elif corruption == "drop-key":
        del ck[REQUIRED[pick % len(REQUIRED)]]
    elif corruption == "drop-entry":
        del sd[key]
    elif corruption == "negative-theta":
        t = sd["layers.0.theta_base"].clone()
        t[pick % len(t)] = -abs(float(t[pick % len(t)]))
        sd["layers.0.theta_base"] = t
    elif corruption == "decay-range":
        ck["neuron"]["i_decay" if pick % 2 else "v_decay"] = -1 if pick % 4 < 2 else 4097
    elif corruption == "junk":
        path = JUNK_PATHS[pick % len(JUNK_PATHS)]
        d = ck
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = junk


def _make(make_ckpt, spec, theta):
    ck = make_ckpt(**spec)
    g = torch.Generator().manual_seed(spec["seed"])
    for k, t in ck["state_dict"].items():
        if k.endswith("theta_base"):   # per-neuron thresholds, so the fold has work to do
            ck["state_dict"][k] = theta * (0.5 + 1.5 * torch.rand(t.shape, generator=g))
    return ck


def _export_and_check(model: pathlib.Path, must_fail: bool, counts: dict) -> None:
    """The invariant of every case: a complete, runnable build, or a DeployError and nothing."""
    out = model.parent / "out" / "b"
    counts["cases"] += 1
    counts["must_refuse"] += must_fail
    try:
        m = build.export(model, "loihi", out, calib_samples=8, progress=False)
    except DeployError as e:
        assert "\n" not in str(e), str(e)
        assert not out.parent.exists() or os.listdir(out.parent) == []
        counts["refused"] += 1
        return
    assert not must_fail, f"a corrupted model was exported: {m}"
    assert sorted(os.listdir(out.parent)) == ["b"]
    assert sorted(os.listdir(out)) == sorted(m["files"])
    graph, _ = build.load(out)
    spikes = emulator.run(graph, data.encode(data.load("digits").test.x[:4], graph.steps, graph.encoding))
    assert [s.shape[-1] for s in spikes] == [l["n_out"] for l in m["layers"]]
    counts["exported"] += 1


def _report(capsys, what, counts, n):
    with capsys.disabled():
        print(f"\nfuzz {what}: {counts['cases']} cases ({counts['must_refuse']} invalid by "
              f"construction), {counts['exported']} exported, {counts['refused']} refused "
              f"with a one-line DeployError")
    assert counts["cases"] == n
    assert counts["exported"] + counts["refused"] == n
    return counts


def test_fuzz_random_networks(make_ckpt, monkeypatch, capsys):
    monkeypatch.setattr(data, "load", functools.lru_cache(data.load))  # the dataset is not fuzzed
    counts = {"cases": 0, "must_refuse": 0, "exported": 0, "refused": 0}

    @FUZZ
    @given(networks())
    def case(net):
        spec, theta, corruption, pick, junk = net
        ck = _make(make_ckpt, spec, theta)
        _corrupt(ck, corruption, pick, junk)
        with tempfile.TemporaryDirectory() as d:
            model = pathlib.Path(d) / "m.pt"
            torch.save(ck, model)
            _export_and_check(model, CORRUPTIONS[corruption], counts)

    case()
    c = _report(capsys, "random networks", counts, N_NETWORKS)
    assert c["exported"] >= N_NETWORKS // 10 and c["refused"] >= N_NETWORKS // 4, c


@st.composite
def damaged_files(draw):
    spec = dict(sizes=[64, draw(st.integers(1, 12)), draw(st.integers(1, 10))],
                steps=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2 ** 16)))
    damage = draw(st.sampled_from(["truncate", "flip", "overwrite", "prefix", "empty", "random"]))
    where = draw(st.floats(0, 1, exclude_max=True))
    junk = draw(st.binary(min_size=1, max_size=64))
    return spec, damage, where, junk


def _damage(raw: bytes, damage, where, junk) -> bytes:
    i = int(where * len(raw))
    if damage == "truncate":
        return raw[:i]
    if damage == "flip":
        return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]
    if damage == "overwrite":
        return raw[:i] + junk + raw[i + len(junk):]
    if damage == "prefix":
        return junk + raw
    if damage == "empty":
        return b""
    return junk * 64


def test_fuzz_damaged_files(make_ckpt, monkeypatch, capsys):
    monkeypatch.setattr(data, "load", functools.lru_cache(data.load))
    counts = {"cases": 0, "must_refuse": 0, "exported": 0, "refused": 0}

    @FUZZ
    @given(damaged_files())
    def case(f):
        spec, damage, where, junk = f
        with tempfile.TemporaryDirectory() as d:
            model = pathlib.Path(d) / "m.pt"
            torch.save(make_ckpt(**spec), model)
            model.write_bytes(_damage(model.read_bytes(), damage, where, junk))
            _export_and_check(model, damage in ("truncate", "empty", "random"), counts)

    case()
    _report(capsys, "damaged files", counts, N_FILES)


def test_fuzz_cases_through_the_command(make_ckpt, tmp_path):
    """A few cases through the installed `ahsar-export` command: one line, exit 1, nothing
    written for damaged files; a complete build for an intact one."""
    exe = pathlib.Path(sys.executable).with_name("ahsar-export")
    good = tmp_path / "good.pt"
    torch.save(make_ckpt([64, 9, 10], steps=3, seed=7), good)
    raw = good.read_bytes()
    cases = {"cut.pt": _damage(raw, "truncate", 0.7, b""),
             "junk.pt": _damage(raw, "overwrite", 0.3, bytes(range(64)))}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        r = subprocess.run([str(exe), str(tmp_path / name), "-o", str(tmp_path / "b"), "-q"],
                           capture_output=True, text=True, timeout=300)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith("ahsar export: error: ") and name in lines[0], lines
        assert not (tmp_path / "b").exists()
    r = subprocess.run([str(exe), str(good), "-o", str(tmp_path / "b"), "-q", "--calib-samples", "16"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "b")) == ["calibration.json", "calibration.md", "manifest.json", "model.net", "model.nir", "source.npz"]
