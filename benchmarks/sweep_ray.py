"""`ahsar sweep` one by one vs on local Ray (issue 20): the same small grid both ways.

digits, 2 methods (baseline, ahsar) x 2 seeds, the default 64-128-64-10 MLP, 16 steps,
--epochs epochs. The grid runs first one trial after the other in this process
(``serial=True``), then as Ray tasks on a local instance of --cpus CPUs (default all
cores; its start-up is timed as part of the Ray wall time and shown apart). Each trial
trains on one torch thread either way; "identical" means every trial's accuracy, rates
and validation curve are equal and every checkpoint's weights are bitwise equal.

Writes benchmarks/results/sweep_ray.md (table) and sweep_ray.json; the trials themselves
go to a temporary directory.

    python benchmarks/sweep_ray.py [--epochs 30] [--cpus N]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results"


def identical(a_dir: Path, b_dir: Path, a: dict, b: dict) -> bool:
    """Same trials, same results (but the timings), bitwise-equal checkpoints."""
    strip = lambda r: {k: v for k, v in r.items() if k != "train_seconds"}   # noqa: E731
    if [strip(r) for r in a["trials"]] != [strip(r) for r in b["trials"]]:
        return False
    for ra, rb in zip(a["trials"], b["trials"]):
        ca = torch.load(a_dir / ra["checkpoint"], weights_only=True)
        cb = torch.load(b_dir / rb["checkpoint"], weights_only=True)
        sa, sb = ca.pop("state_dict"), cb.pop("state_dict")
        if ca != cb or sa.keys() != sb.keys() or any(
                sa[k].numpy().tobytes() != sb[k].numpy().tobytes() for k in sa):
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import ray

    from ahsar_deploy.sweep import sweep
    cpus = args.cpus or os.cpu_count()
    grid = {"data": "digits", "epochs": args.epochs, "method": ["baseline", "ahsar"], "seeds": [0, 1]}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ahsar-sweep-bench-") as tmp:
        tmp = Path(tmp)
        print(f"serial: {grid}", file=sys.stderr)
        t0 = time.perf_counter()
        serial = sweep(grid, tmp / "serial", serial=True)
        serial_s = time.perf_counter() - t0
        print(f"local Ray, {cpus} CPUs", file=sys.stderr)
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
        startup_s = time.perf_counter() - t0
        try:
            on_ray = sweep(grid, tmp / "ray")
        finally:
            ray.shutdown()
        ray_s = time.perf_counter() - t0
        same = identical(tmp / "serial", tmp / "ray", serial, on_ray)
    load_after = os.getloadavg()[0]
    n = len(serial["trials"])
    result = {"grid": grid, "cpus": cpus, "trials": n, "serial_wall_s": serial_s, "ray_wall_s": ray_s,
              "ray_startup_s": startup_s, "speedup": serial_s / ray_s, "identical": same,
              "per_trial": [{"name": a["name"], "test_accuracy": a["test_accuracy"],
                             "serial_train_s": a["train_seconds"], "ray_train_s": b["train_seconds"]}
                            for a, b in zip(serial["trials"], on_ray["trials"])],
              "load_average_1min": [load_before, load_after], "ray_version": ray.__version__,
              "torch_version": torch.__version__}
    lines = ["| trials | serial wall s | Ray wall s (start-up) | speed-up | results identical |",
             "|---|---|---|---|---|",
             f"| {n} | {serial_s:.1f} | {ray_s:.1f} ({startup_s:.1f}) | {serial_s / ray_s:.2f}x | "
             f"{'yes' if same else 'no'} |", "",
             f"digits, 2 methods x 2 seeds, "
             f"{args.epochs} epochs, one torch thread per trial; local Ray {ray.__version__} on {cpus} CPUs; "
             f"1-minute load average {load_before:.1f} before, {load_after:.1f} after (other processes "
             f"on the same cores slow the parallel run most).", "",
             "| trial | test acc % | train s serial | train s on Ray |", "|---|---|---|---|"]
    lines += [f"| {t['name']} | {100 * t['test_accuracy']:.2f} | {t['serial_train_s']:.1f} | "
              f"{t['ray_train_s']:.1f} |" for t in result["per_trial"]]
    table = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    for path, text in ((OUT / "sweep_ray.md", table), (OUT / "sweep_ray.json", json.dumps(result, indent=1) + "\n")):
        tmp_path = path.with_suffix(".tmp")
        tmp_path.write_text(text)
        os.replace(tmp_path, path)
    print(table)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
