"""Targets through the CLI: loihi2 export and energy, energy-only TrueNorth, and
`ahsar run` on Lava against the emulator on the same build."""
import json
import shutil

import pytest


def assert_one_line_error(r, *words):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_loihi2_export_shares_loihi_grid_and_energy_models(small_model, small_build, tmp_path, cli):
    out = tmp_path / "l2"
    r = cli("export", small_model, "--target", "loihi2", "-o", out, "--calib-samples", "64", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "manifest.json").read_text())["target"] == "loihi2"
    # same Lava fixed-point grid: byte-identical network file
    assert (out / "model.net").read_bytes() == (small_build / "model.net").read_bytes()
    r = cli("energy", out, "--backend", "emulator", "--samples", "20", "--json", "-q")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["target"] == "loihi2" and rep["energy_note"].startswith("ESTIMATE")
    assert rep["static_power_w"] == 0.232 and rep["cores"] == 3
    assert {t["target"] for t in rep["targets"]} == {"loihi", "loihi2", "truenorth", "spinnaker", "spinnaker2"}
    assert json.loads((out / "energy.json").read_text())["target"] == "loihi2"
    assert "| layer0 |" in (out / "energy.md").read_text()
    r = cli("energy", out, "--backend", "emulator", "--samples", "20", "--target", "truenorth", "--json", "-q")
    assert r.returncode == 0, r.stderr
    tn = json.loads(r.stdout)
    acs = tn["neurobench"]["SynapticOperations"]["Effective_ACs"]
    assert tn["total_j_per_inference"] == pytest.approx(26e-12 * acs, rel=1e-12)
    # another chip's report goes beside the build's own, never over it
    assert json.loads((out / "energy-truenorth.json").read_text())["target"] == "truenorth"
    assert json.loads((out / "energy.json").read_text())["target"] == "loihi2"
    assert (out / "energy-truenorth.md").is_file() and (out / "energy-truenorth.png").is_file()


def test_truenorth_is_energy_only(small_model, tmp_path, cli):
    r = cli("export", small_model, "--target", "truenorth", "-o", tmp_path / "b")
    assert_one_line_error(r, "truenorth", "energy model only")
    assert not (tmp_path / "b").exists()


def test_run_lava_equals_run_emulator(small_build, tmp_path, cli):
    b = tmp_path / "b"
    shutil.copytree(small_build, b)
    runs = {}
    for backend in ("lava", "emulator"):
        r = cli("run", b, "--backend", backend, "--samples", "12", "--json", "-q")
        assert r.returncode == 0, r.stderr
        runs[backend] = json.loads(r.stdout)
    lava, emu = runs["lava"], runs["emulator"]
    assert lava["predictions"] == emu["predictions"] and len(lava["predictions"]) == 12
    assert [c["spikes"] for c in lava["counters"]] == [c["spikes"] for c in emu["counters"]]
    assert lava["counters"] == emu["counters"]          # every counter, every step
    assert sum(c["spikes"] for c in emu["counters"]) > 100
