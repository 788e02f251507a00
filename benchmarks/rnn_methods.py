"""Recurrent CUBA-LIF networks on sequential MNIST with and without AHSAR (issue 18).

Sequential MNIST (`--data smnist`): each image fed row by row, 28 steps of 28 binary
inputs (pixel > 1/2). Network 28-H-10, H recurrent CUBA-LIF neurons (dense input and
recurrent weights, per-neuron biases), feed-forward spiking readout with biases decoded by
spike count; decays i_decay 2048, v_decay 1024 (du = 1/2, dv = 3/4). Methods:
baseline, ahsar, rouser, rouser+ahsar (METHODS.md 1, 2), 3 seeds each, one fixed budget.
Reports float test accuracy (mean ± sd over seeds), the accuracy deployed on Loihi
(export with default options, then the bit-exact emulator on all 10,000 test samples),
hidden and readout test firing rates, whether the hidden rate sits in AHSAR's band
[0.05, 0.25], never-firing hidden neurons, synaptic operations and Loihi dynamic energy
per inference; plots deployed accuracy against energy (rnn_methods.png). Same as, per run:

    ahsar train --data smnist --arch rnn --method METHOD --hidden 128 --bias --i-decay 2048 \\
        --v-decay 1024 --batch 64 --epochs E --lr-schedule cosine --seed S [--train-samples N]

CPU budget, measured on the shared 2-core machine (one torch thread per worker, two
workers, other jobs running), H = 128: the default (--train-samples 20000, --epochs 6,
12 runs of 1-3 min each, deployment included) took 8 to 14 min as other jobs came and
went; a full-data epoch (55 000 samples, validation included) takes 50-130 s depending
on load, so full data x 20 epochs (the recipe of the headline checkpoint: 97.0 % float
test accuracy, 27 min) is about 4-5 hours for the 12 runs. Runs are cached in
benchmarks/results/rnn_methods.json (delete it to start over), so an interrupted
benchmark resumes; writes rnn_methods.md (table) and rnn_methods.png. Deploying adds
about 15 s per run.

    python benchmarks/rnn_methods.py [--epochs 6] [--train-samples 20000] [--seeds 0,1,2]
        [--hidden 128] [--workers 2] [--methods baseline,ahsar,rouser,rouser+ahsar]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
BAND = (0.05, 0.25)


def key(c: dict) -> str:
    return json.dumps(c, sort_keys=True)


def run_one(c: dict) -> dict:
    """Train one configuration in this worker process; return its measurements."""
    import torch
    torch.set_num_threads(1)
    from ahsar_deploy.train import train
    t0 = time.perf_counter()
    ckpt = train(data="smnist", arch="rnn", method=c["method"], hidden=(c["hidden"],), epochs=c["epochs"],
                 seed=c["seed"], batch=c["batch"], lr_schedule="cosine", bias=True, i_decay=2048,
                 v_decay=1024, train_samples=c["train_samples"] or None, progress=False)
    seconds = time.perf_counter() - t0
    return {"config": c, "test_accuracy": ckpt["test_accuracy"], "test_rates": ckpt["test_rates"],
            "test_dead": ckpt["test_dead"], "val_curve": [e["val_accuracy"] for e in ckpt["history"]],
            "seconds": seconds, **deploy(ckpt)}


def deploy(ckpt: dict) -> dict:
    """Export to Loihi (defaults: calibration, QAT auto, refit), run the whole test split on
    the emulator (bit-exact with Lava), price it on Loihi: deployed accuracy, rates, energy."""
    import tempfile

    from ahsar_deploy import api, checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(ckpt, Path(tmp) / "model.pt")
        api.export(Path(tmp) / "model.pt", "loihi", Path(tmp) / "b")
        rep = api.energy(Path(tmp) / "b", samples=10_000, backend="emulator")
    return {"deployed_accuracy": rep["accuracy"], "deployed_rates": [l["rate"] for l in rep["layers"]],
            "loihi_dynamic_j": rep["dynamic_j_per_inference"], "loihi_total_j": rep["total_j_per_inference"],
            "synaptic_ops": rep["synaptic_ops_per_inference"]}


def summarise(results: list[dict]) -> str:
    """Markdown table: one row per method, means and spreads over seeds."""
    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["config"]["method"], []).append(r)
    c0 = results[0]["config"]
    lines = [f"Sequential MNIST, rnn 28-{c0['hidden']}-10 with biases, i_decay 2048, v_decay 1024, "
             f"{c0['epochs']} epochs, {c0['train_samples'] or 'all'} training samples, batch {c0['batch']}, "
             f"cosine lr; float test accuracy (torch) and deployed on Loihi (emulator, bit-exact with "
             f"Lava; all 10,000 test samples), Loihi energy per inference (Davies 2018 per operation).", "",
             "| method | seeds | float test acc % | deployed test acc % | hidden rate | readout rate | "
             f"hidden in [{BAND[0]}, {BAND[1]}] | dead hidden % | syn ops / inf | Loihi dynamic nJ / inf | "
             "minutes per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    pm = lambda v, f="{:.2f}": f"{f.format(np.mean(v))} ± {f.format(np.std(v, ddof=1) if len(v) > 1 else 0)}"
    for method, rs in by_method.items():
        rates = np.mean([r["test_rates"] for r in rs], axis=0)
        lines.append(f"| {method} | {len(rs)} | {pm([100 * r['test_accuracy'] for r in rs])} | "
                     f"{pm([100 * r['deployed_accuracy'] for r in rs])} | "
                     f"{rates[0]:.3f} | {rates[-1]:.3f} | {'yes' if BAND[0] <= rates[0] <= BAND[1] else 'no'} | "
                     f"{100 * np.mean([r['test_dead'][0] for r in rs]):.1f} | "
                     f"{np.mean([r['synaptic_ops'] for r in rs]):,.0f} | "
                     f"{pm([1e9 * r['loihi_dynamic_j'] for r in rs], '{:,.0f}')} | "
                     f"{np.mean([r['seconds'] for r in rs]) / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-samples", type=int, default=20000, help="0: the full 55 000")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="baseline,ahsar,rouser,rouser+ahsar")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    configs = [{"method": m, "seed": int(s), "epochs": args.epochs, "train_samples": args.train_samples,
                "hidden": args.hidden, "batch": args.batch}
               for m in args.methods.split(",") for s in args.seeds.split(",")]
    OUT.mkdir(exist_ok=True)
    cache_path = OUT / "rnn_methods.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    todo = [c for c in configs if "deployed_accuracy" not in cache.get(key(c), {})]
    print(f"{len(configs)} runs, {len(todo)} to do, {args.workers} workers", file=sys.stderr)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_one, c) for c in todo]
        for i, f in enumerate(as_completed(futures), 1):
            r = f.result()
            cache[key(r["config"])] = r
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, cache_path)
            print(f"[{i}/{len(todo)} {time.perf_counter() - t0:.0f} s] {r['config']['method']} seed "
                  f"{r['config']['seed']}: {100 * r['test_accuracy']:.2f} %", file=sys.stderr, flush=True)
    results = [cache[key(c)] for c in configs]
    table = summarise(results)
    (OUT / "rnn_methods.md").write_text(table)
    plot(results, OUT / "rnn_methods.png")
    print(table)
    return 0


def plot(results: list[dict], path: Path) -> None:
    """PNG: deployed test accuracy against Loihi dynamic energy per inference, one point per
    run, a colour per method (float accuracy as hollow markers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, method in enumerate(dict.fromkeys(r["config"]["method"] for r in results)):
        rs = [r for r in results if r["config"]["method"] == method]
        e = [1e9 * r["loihi_dynamic_j"] for r in rs]
        ax.scatter(e, [100 * r["deployed_accuracy"] for r in rs], color=f"C{i}", label=f"{method} (deployed)")
        ax.scatter(e, [100 * r["test_accuracy"] for r in rs], facecolors="none", edgecolors=f"C{i}",
                   label=f"{method} (float)")
    ax.set_xlabel("Loihi dynamic energy per inference (nJ)")
    ax.set_ylabel("sequential MNIST test accuracy (%)")
    ax.set_title("recurrent 28-128-10, one point per seed")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
