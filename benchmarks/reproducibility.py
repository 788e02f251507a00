"""The demo's bytes under every kernel path this machine has, pinned and native.

Trains exactly what `make demo` trains (the Makefile's `ahsar train` and `ahsar-export`
lines, read from it) in new processes, once per setting: each native kernel path forced
in turn (ATen's CPU capability, oneMKL's code path, numpy's OpenBLAS core, numba's target
CPU) and 1, 2 and 4 threads, first with the CLI's pinned kernels (ahsar_deploy/kernels.py)
and then with AHSAR_KERNELS=native. For each run: digests of the checkpoint file, of its
weights alone, of model.net and of the whole build (every file), the float and deployed
accuracy `ahsar run --backend emulator` gives on the 360 test samples, and the training
and export times. Pinned rows should share one digest per column; native rows show what
each path changes. Writes benchmarks/results/reproducibility.md and .json.
Usage: python benchmarks/reproducibility.py [--quick]   (--quick: 3 epochs, fewer rows)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BIN = Path(sys.executable).parent
from ahsar_deploy.kernels import PINNED, cpu_name  # noqa: E402
# Each setting forces one native choice; under the pin, all but the thread counts and
# numba's target are overridden, so their rows must give the pinned digests again.
SETTINGS = [
    {}, {"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "4"},
    {"ATEN_CPU_CAPABILITY": "avx2"}, {"ATEN_CPU_CAPABILITY": "default"},
    {"MKL_CBWR": "AVX2"}, {"MKL_CBWR": "COMPATIBLE"},
    {"OPENBLAS_CORETYPE": "Haswell"}, {"OPENBLAS_CORETYPE": "Zen"},
    {"NUMBA_CPU_NAME": "generic"},
]
QUICK = [{}, {"OMP_NUM_THREADS": "1"}, {"ATEN_CPU_CAPABILITY": "avx2"}, {"OPENBLAS_CORETYPE": "Haswell"}]
# what a run's environment drops from this process's before it adds its own setting
CLEARED = {"AHSAR_KERNELS", *(k for s in SETTINGS for k in s), *PINNED}


def demo_args() -> tuple[list[str], list[str]]:
    """The Makefile demo's `ahsar train` and `ahsar-export` arguments (BUILD left in)."""
    text = (REPO / "Makefile").read_text()
    recipe = text[text.index("\ndemo:"):].split("\n\n")[0]
    train = export = None
    for line in recipe.splitlines():
        words = shlex.split(line.strip().replace("$(BUILD)", "BUILD"))
        if words and words[0].endswith("/ahsar") and words[1] == "train":
            train = words[2:]
        elif words and words[0].endswith("/ahsar-export"):
            export = words[1:]
    return train, export


def digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def weights_digest(path: Path) -> str:
    """sha256 of the checkpoint's tensors (names and bytes), not of its other fields."""
    import torch
    ck = torch.load(path, weights_only=True)
    h = hashlib.sha256()
    for k, v in sorted(ck["state_dict"].items()):
        h.update(k.encode() + b"\0" + v.numpy().tobytes())
    return h.hexdigest()[:12]


def run(argv: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])} failed: {r.stderr[-1000:]}")
    return time.perf_counter() - t0, r.stdout


def one(tmp: Path, name: str, setting: dict, pinned: bool, epochs: int | None) -> dict:
    train, export = demo_args()
    if epochs is not None:
        train[train.index("--epochs") + 1] = str(epochs)
    (tmp / name).mkdir()   # the same file names in every run: a build records its model's name
    model, out = tmp / name / "model.pt", tmp / name / "loihi"
    sub = lambda args: [str(model) if a == "BUILD/model.pt" else str(out) if a == "BUILD/loihi" else a for a in args]
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(setting, AHSAR_KERNELS="pinned" if pinned else "native")
    t_train, _ = run([str(BIN / "ahsar"), "train", *sub(train), "-q"], env)
    t_export, _ = run([str(BIN / "ahsar-export"), *sub(export), "-q"], env)
    build = digest(sorted(p for p in out.iterdir() if p.is_file()))   # before `ahsar run` adds its records
    _, js = run([str(BIN / "ahsar"), "run", str(out), "--backend", "emulator", "--data", "digits",
                 "--samples", "360", "--json", "-q"], env)
    r = json.loads(js)
    return {"kernels": "pinned" if pinned else "native",
            "setting": " ".join(f"{k}={v}" for k, v in setting.items()) or "(none)",
            "checkpoint": digest([model]), "weights": weights_digest(model),
            "model.net": digest([out / "model.net"]), "build": build,
            "float %": 100 * r["source"]["accuracy"], "emulator %": 100 * r["accuracy"],
            "train s": t_train, "export s": t_export}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 epochs and 4 settings (a smoke run)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pinned in (True, False):
            for i, s in enumerate(QUICK if a.quick else SETTINGS):
                rows.append(one(Path(tmp), f"{'p' if pinned else 'n'}{i}", s, pinned, 3 if a.quick else None))
                print(json.dumps(rows[-1], default=str), file=sys.stderr, flush=True)
    cols = ["kernels", "setting", "checkpoint", "weights", "model.net", "build", "float %", "emulator %",
            "train s", "export s"]
    fmt = lambda c, v: f"{v:.2f}" if c.endswith("%") else f"{v:.1f}" if c.endswith(" s") else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(c, r[c]) for c in cols) + " |" for r in rows]
    distinct = {k: {(r["kernels"], r[k]) for r in rows} for k in ("checkpoint", "build")}
    summary = [f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {_version('torch')}, numpy {_version('numpy')}.",
               *(f"{kind}: {len({d for k2, d in distinct['checkpoint'] if k2 == kind})} distinct checkpoint(s), "
                 f"{len({d for k2, d in distinct['build'] if k2 == kind})} distinct build(s) over "
                 f"{sum(r['kernels'] == kind for r in rows)} settings" for kind in ("pinned", "native"))]
    text = "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"
    print(text)
    if not a.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "reproducibility.md").write_text(text)
        (RESULTS / "reproducibility.json").write_text(json.dumps(rows, indent=1) + "\n")


def _version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


if __name__ == "__main__":
    main()
