"""MNIST with `ahsar train`'s defaults (5 epochs) and with the 98.5 % recipe, each deployed.

(a) the defaults for 28x28 images (784-1000-10, 8 steps, batch 128, Adam 1e-3 with a cosine
schedule) for 5 epochs; (b) the same network for 20 epochs on training images shifted by up
to 1 pixel, the recipe for 98.5 %. Each runs the commands a user types, seed 0:

    ahsar train --data mnist --method ahsar --epochs 5 --seed 0 -o model.pt                     # (a)
    ahsar train --data mnist --method ahsar --augment-shift 1 --epochs 20 --seed 0 -o model.pt  # (b)
    ahsar-export model.pt --target loihi -o build --force
    ahsar run build --backend emulator --data mnist                              # 10,000 test images

and reports the wall time of `ahsar train` (start-up included), the float model's test
accuracy (from training), the emulator's accuracy on the whole test set (bit-exact with
Lava) and the wall time of `ahsar-export`. Writes benchmarks/results/train_defaults.md and
.json; checkpoints go to benchmarks/results/train_defaults_<name>.pt (git-ignored), and
--reuse skips training where one exists (its row keeps the training time of the run that
trained it).

    python benchmarks/train_defaults.py [--only defaults|recipe] [--reuse]

--only runs one configuration and keeps the other's row from the existing .json.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent
DEFAULTS = ["--data", "mnist", "--method", "ahsar", "--epochs", "5"]
# the defaults' network (784-1000-10, 8 steps, batch 128, Adam 1e-3 cosine) trained longer on shifted images
RECIPE = ["--data", "mnist", "--method", "ahsar", "--augment-shift", "1", "--epochs", "20"]
CONFIGS = {"defaults": DEFAULTS, "recipe": RECIPE}


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"{shlex.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r, secs


def one(name: str, targs: list[str], reuse: bool, before: dict | None) -> dict:
    """Train (or, with reuse, load) one configuration, export it and run it; before: this
    configuration's row from the last run, whose training time a reused checkpoint keeps
    when it is the checkpoint that run trained (same sha256, or for rows written before
    the sha256 was recorded, the same float test accuracy)."""
    from ahsar_deploy import checkpoint
    model = OUT / f"train_defaults_{name}.pt"
    row = {"name": name, "command": "ahsar train " + shlex.join(targs), "seed": 0,
           "epochs": int(targs[targs.index("--epochs") + 1])}
    if reuse and model.is_file():
        ckpt = checkpoint.load(model)
        sha, acc = checkpoint.sha256(model), float(ckpt["test_accuracy"])
        same = before is not None and (before.get("model_sha256") == sha or
                                       ("model_sha256" not in before and before.get("float_test") == acc))
        row.update(train_s=before.get("train_s") if same else None, float_test=acc, reused=True,
                   model_sha256=sha)
    else:
        print(f"{name}: ahsar train {shlex.join(targs)} ...", file=sys.stderr, flush=True)
        r, secs = _run([BIN / "ahsar", "train", *targs, "--seed", "0", "-o", model, "--json", "-q"])
        row.update(train_s=secs, float_test=float(json.loads(r.stdout)["test_accuracy"]), reused=False,
                   model_sha256=checkpoint.sha256(model))
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build"
        _, row["export_s"] = _run([BIN / "ahsar-export", model, "--target", "loihi", "-o", build, "--force", "-q"])
        r, _ = _run([BIN / "ahsar", "run", build, "--backend", "emulator", "--data", "mnist", "--json", "-q"])
    run = json.loads(r.stdout)
    row.update(deployed=float(run["accuracy"]), test_samples=int(run["samples"]),
               load_1min=os.getloadavg()[0])
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| command | epochs | train s | float test % | deployed emulator % (10,000) | export s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        t = "-" if r["train_s"] is None else f"{r['train_s']:.0f}"
        lines.append(f"| `{r['command']}` | {r['epochs']} | {t} | {100 * r['float_test']:.2f} | "
                     f"{100 * r['deployed']:.2f} | {r['export_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=tuple(CONFIGS), default=None)
    ap.add_argument("--reuse", action="store_true", help="deploy existing checkpoints instead of training again")
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    done = OUT / "train_defaults.json"   # --only keeps the other configuration's row
    rows = {r["name"]: r for r in (json.loads(done.read_text())["rows"] if done.is_file() else [])}
    rows.update({n: one(n, c, a.reuse, rows.get(n)) for n, c in CONFIGS.items() if a.only in (None, n)})
    rows = [rows[n] for n in CONFIGS if n in rows]
    md = table(rows)
    kept = "; reused checkpoints keep the training time of the run that trained them" \
        if any(r.get("reused") for r in rows) else ""
    note = (f"\nSeed 0; `ahsar-export --target loihi`, then `ahsar run --backend emulator` on all "
            f"{rows[0]['test_samples']:,} test images. Wall times on a {os.cpu_count()}-core machine shared with "
            f"other jobs (1-minute load {max(r['load_1min'] for r in rows):.1f} at the end of a run); "
            f"train s includes start-up{kept}; export s is the whole `ahsar-export` command, imports "
            f"included.\n")
    (OUT / "train_defaults.md").write_text(md + note)
    done.write_text(json.dumps(
        {"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    print(md + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
