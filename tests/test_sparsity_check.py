"""`ahsar energy --check` passes on a faithful build and fails when thresholds change."""
import json
import shutil

import h5py


def test_check_passes_then_fails_after_threshold_change(small_build, tmp_path, cli, reseal):
    build = tmp_path / "b"
    shutil.copytree(small_build, build)
    r = cli("energy", build, "--backend", "emulator", "--samples", "60", "--check", "--json", "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert all(c["ok"] for c in report["sparsity_check"])
    assert (build / "energy.png").stat().st_size > 1000

    changed = tmp_path / "changed"
    shutil.copytree(build, changed)   # its spike cache is of the unchanged files: not reused
    with h5py.File(changed / "model.net", "r+") as f:
        f["layer/0/neuron/vThMant"][()] *= 3          # threshold raised after training
    m = json.loads((changed / "manifest.json").read_text())
    m["layers"][0]["vth_mant"] *= 3
    (changed / "manifest.json").write_text(json.dumps(m))
    reseal(changed)   # the edit recorded as the build's own (else refused: tests/test_build_digest.py)
    r = cli("energy", changed, "--backend", "emulator", "--samples", "60", "--check")
    assert r.returncode != 0
    assert "sparsity check failed for layer0" in r.stderr.splitlines()[-1]


def test_a_layer_without_training_rate_or_regulation_is_not_checked():
    """Was: reported "pass" although nothing was compared (an imported graph without metadata)."""
    import numpy as np

    from ahsar_deploy.energy_report import check_sparsity
    from ahsar_deploy.ir import DeployGraph, Layer

    def layer(name, regulated, train_rate):
        return Layer(name=name, weight=np.ones((2, 2)), threshold=np.ones(2), i_decay=4096, v_decay=0,
                     regulated=regulated, train_rate=train_rate)
    graph = DeployGraph(layers=(layer("a", True, None), layer("b", False, 0.1), layer("c", False, None),
                                layer("d", True, 0.1)),
                        n_inputs=2, steps=4, dataset="digits", encoding="rate", method="nir-import",
                        source_sha256="")
    report = {"layers": [{"rate": 0.1}, {"rate": 0.1}, {"rate": 0.1}, {"rate": 0.5}]}
    got = [(c["status"], c["checks"], c["ok"]) for c in check_sparsity(report, graph)]
    assert got == [("pass", ["AHSAR band"], True), ("pass", ["training rate"], True),
                   ("not checked", [], True), ("FAIL", ["training rate", "AHSAR band"], False)]
