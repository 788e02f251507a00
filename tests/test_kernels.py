"""Pinned kernels (ahsar_deploy/kernels.py): the same seed gives the same checkpoint bytes,
and the same checkpoint the same build bytes, whatever thread count and native kernel path
the environment asks for; a bad AHSAR_KERNELS is one line and exit 1."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from ahsar_deploy import kernels

BIN = Path(sys.executable).parent
TRAIN = ["train", "--data", "digits", "--method", "ahsar", "--hidden", "24,12", "--steps", "6",
         "--epochs", "2", "--seed", "3", "-q"]
# what another CPU would choose by itself: fewer threads, AVX2 instead of AVX-512, another BLAS core
OTHER_CPU = {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell", "NUMBA_CPU_NAME": "generic"}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in kernels.PINNED and k != kernels.OPT_OUT}
    env.update(extra)
    return env


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _train_export(where: Path, env: dict) -> tuple[dict, dict]:
    where.mkdir()
    for argv in ([BIN / "ahsar", *TRAIN, "-o", where / "model.pt"],
                 [BIN / "ahsar-export", where / "model.pt", "--target", "loihi", "-o", where / "loihi", "-q"]):
        r = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    return _digests(where)["model.pt"], _digests(where / "loihi")


def test_pinned_training_and_export_give_the_same_bytes_on_another_kernel_path(tmp_path):
    ckpt_a, build_a = _train_export(tmp_path / "a", _env(OMP_NUM_THREADS="2"))
    ckpt_b, build_b = _train_export(tmp_path / "b", _env(**OTHER_CPU))
    assert ckpt_a == ckpt_b
    assert build_a == build_b, {k: (build_a[k][:12], build_b.get(k, "")[:12]) for k in build_a}


def test_checkpoint_and_build_record_the_kernels(small_model, small_build):
    import json

    from ahsar_deploy import checkpoint
    state = kernels.state()
    assert state["pinned"] == kernels.wanted(), state   # conftest pinned unless AHSAR_KERNELS=native
    assert checkpoint.load(small_model)["kernels"] == state
    assert json.loads((small_build / "manifest.json").read_text())["kernels"] == state


def test_bad_opt_out_value_is_one_line_and_exit_1():
    r = subprocess.run([str(BIN / "ahsar"), "inspect", "x.pt"], env=_env(AHSAR_KERNELS="fast"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == "ahsar: error: AHSAR_KERNELS='fast': expected 'pinned' (the default) or 'native'"


def test_pin_refuses_after_numpy_loaded_unpinned_and_sets_another_environ():
    code = ("import numpy\nfrom ahsar_deploy import kernels\n"
            "env = {}\nassert kernels.pin(env) and env == kernels.PINNED\n"
            "assert not kernels.pin({'AHSAR_KERNELS': 'native'})\n"
            "try:\n    kernels.pin()\nexcept RuntimeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("kernels.pin(): numpy already imported; call it before importing them"), r.stdout
