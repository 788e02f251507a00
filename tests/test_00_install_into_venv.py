"""Installing into a user's own virtual environment (issue 15): `make install VENV=...`
runs the Makefile's own steps (lava's Python pin included) into an existing venv that
already holds torch and snnTorch, keeps both, and gives working commands.

Named test_00_* so the parallel runner starts it first: it takes about a minute of pip.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TORCH_AND_DEPS = {"torch", "torchgen", "functorch", "filelock", "fsspec", "jinja2", "markupsafe", "mpmath",
                  "networkx", "sympy", "typing_extensions"}


def _hold_torch(venv: Path) -> None:
    """Give the new venv the torch a user's snnTorch venv already holds: this suite's own
    torch and its dependencies, as hard links (instant; deleting a link in the new venv
    leaves this venv's files alone)."""
    src = Path(torch.__file__).resolve().parents[1]
    dst = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for p in src.iterdir():
        if p.name.split("-")[0].split(".")[0].lower() in TORCH_AND_DEPS:
            if p.is_dir():
                shutil.copytree(p, dst / p.name, copy_function=os.link)
            else:
                os.link(p, dst / p.name)


def test_make_install_into_an_existing_venv_with_snntorch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    _hold_torch(venv)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "snntorch==1.0.0"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    snn_init = Path(subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('snntorch').origin)"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    before = snn_init.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PYTEST"))}
    r = subprocess.run(["make", "-s", "-C", str(REPO), "install", f"VENV={venv}"], capture_output=True,
                       text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert snn_init.stat().st_mtime_ns == before            # the user's snnTorch was kept
    torch_init = venv / "lib" / "python3.11" / "site-packages" / "torch" / "__init__.py"
    assert torch_init.stat().st_ino == Path(torch.__file__).stat().st_ino   # and the user's torch
    r = subprocess.run([str(venv / "bin" / "ahsar"), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ahsar-deploy "), r.stderr
    # the deploy path works there: train a tiny model and export it to Loihi
    ahsar = str(venv / "bin" / "ahsar")
    r = subprocess.run([ahsar, "train", "--data", "digits", "--epochs", "1", "--hidden", "8", "--steps", "4",
                        "-o", str(tmp_path / "m.pt"), "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(venv / "bin" / "ahsar-export"), str(tmp_path / "m.pt"), "-o", str(tmp_path / "b"),
                        "--calib-samples", "32", "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and (tmp_path / "b" / "model.net").is_file(), r.stderr
    r = subprocess.run([str(py), "-c", "import ahsar_deploy.lava_compat, lava.lib.dl.netx, snntorch, norse, tonic"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
