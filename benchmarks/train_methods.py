"""Threshold methods with and without AHSAR on MNIST and Fashion-MNIST (issue 4).

For each dataset, method and seed: train under one fixed budget, then report test
accuracy (mean and spread over seeds), epochs to reach the validation target (97 %
MNIST, 85 % Fashion-MNIST), per-layer test firing rate and whether hidden layers sit in
AHSAR's band [0.05, 0.25], the fraction of hidden neurons that never fire on the test
set, and accuracy on a shifted test set (Gaussian noise, sigma 0.2, clipped to [0, 1]).
MNIST also gets the ablations: AHSAR with proportional control, and starts from badly
chosen thresholds (theta0 = 4 and 0.25) with and without AHSAR. `--full` adds the
headline runs: MNIST MLP 784-1000-10 on the full training split, 20 epochs, cosine
learning rate, training images shifted by up to 1 pixel (`ahsar train --data mnist
--hidden 1000 --steps 8 --batch 128 --epochs 20 --lr-schedule cosine --augment-shift 1`);
their checkpoints are kept as mnist_mlp_<method>_seed<S>.pt for mnist_deploy.py.

The runs are trials of ahsar_deploy.sweep (`ahsar sweep`'s machinery): Ray tasks of one
CPU each on a local Ray instance (--workers CPUs, default all cores) or on a cluster
(--address), or one by one in this process (--serial), with the same results either way.
Each finished run is written to runs/train_methods/trials/ (checkpoint and result) and
cached in benchmarks/results/train_methods.json, so an interrupted benchmark resumes
(delete both to start over). Writes train_methods.md (table) and train_methods.png
(validation accuracy vs epoch per method) beside it.

    python benchmarks/train_methods.py [--epochs 4] [--train-samples 15000] [--seeds 0,1,2]
        [--workers N | --address ADDR | --serial] [--full] [--only mnist]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
TRIALS = Path(__file__).resolve().parents[1] / "runs" / "train_methods"   # the sweep's directory
TARGET = {"mnist": 0.97, "fmnist": 0.85}
BAND = (0.05, 0.25)
METHODS = ("baseline", "ahsar", "rouser", "rouser+ahsar", "hoyer", "hoyer+ahsar")
NOISE = 0.2
# The headline MNIST MLP (--full; mnist_deploy.py trains the same when its model is missing)
FULL = {"data": "mnist", "train_samples": None, "hidden": [1000], "steps": 8, "batch": 128,
        "epochs": 20, "lr_schedule": "cosine", "augment_shift": 1}


def configs(args) -> list[dict]:
    budget = {"epochs": args.epochs, "train_samples": args.train_samples, "hidden": [256],
              "steps": 8, "batch": 128}
    out = []
    for data in args.only or ("mnist", "fmnist"):
        for m in METHODS:
            out.append({"group": "methods", "data": data, "method": m, **budget})
        if data == "mnist":
            out.append({"group": "ablation", "data": data, "method": "ahsar",
                        "control": "proportional", **budget})
            for th in (4.0, 0.25):
                for m in ("baseline", "ahsar"):
                    out.append({"group": "ablation", "data": data, "method": m, "theta0": th, **budget})
    if args.full:
        for m in ("baseline", "ahsar"):
            out.append({"group": "full", "method": m, **FULL, "epochs": args.full_epochs})
    return [{**c, "seed": s} for c in out for s in args.seeds]


def key(c: dict) -> str:
    return json.dumps(c, sort_keys=True)


def label(c: dict) -> str:
    s = c["method"]
    if c.get("control"):
        s += f" ({c['control']})"
    if c.get("theta0") is not None:
        s += f", theta0={c['theta0']:g}"
    if c["group"] == "full":
        s += (f", {'-'.join(map(str, [784, *c['hidden'], 10]))}, full data, {c['epochs']} ep, "
              f"{c['lr_schedule']} lr, shift ±{c['augment_shift']} px")
    return s


def trial(c: dict):
    """The sweep trial that trains configuration c: its keys but "group" are train()'s
    arguments ("control" its AHSAR control mode), the rest train()'s defaults."""
    from ahsar_deploy.sweep import Trial
    return Trial.make({k: v for k, v in c.items() if k != "group"},
                      name=f"{c['data']} {label(c)} seed {c['seed']}")


def measure(args: dict, ckpt: dict) -> dict:
    """Runs where the trial trained (a Ray worker or this process): test accuracy on the
    shifted test set (Gaussian noise, sigma NOISE, clipped to [0, 1], fixed seed)."""
    from ahsar_deploy import checkpoint, data as datamod
    from ahsar_deploy.train import evaluate
    model = checkpoint.build_model(ckpt)
    ds = datamod.load(args["data"])
    rng = np.random.default_rng(1234)
    noisy = np.clip(ds.test.x + rng.normal(0.0, NOISE, ds.test.x.shape), 0.0, 1.0)
    return {"noisy_accuracy": evaluate(model, noisy, ds.test.y, args["steps"])["accuracy"]}


def record(c: dict, r: dict) -> dict:
    """train_methods.json's entry for configuration c from its sweep result r."""
    curve = r["val_accuracy"]
    reach = next((e for e, acc in enumerate(curve, 1) if acc >= TARGET[c["data"]]), None)
    return {"config": c, "test_accuracy": r["test_accuracy"], "test_rates": r["test_rates"],
            "test_dead": r["test_dead"], "noisy_accuracy": r["measured"]["noisy_accuracy"],
            "val_curve": curve, "epochs_to_target": reach, "seconds": r["train_seconds"]}


def summarise(results: list[dict]) -> tuple[str, list[dict]]:
    """Markdown table: one row per configuration, means and spreads over seeds."""
    groups: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: r["config"]["seed"]):
        c = {k: v for k, v in r["config"].items() if k != "seed"}
        groups.setdefault(key(c), []).append(r)
    rows = []
    for k, rs in groups.items():
        c = json.loads(k)
        acc = np.array([r["test_accuracy"] for r in rs]) * 100
        rates = np.mean([r["test_rates"] for r in rs], axis=0)
        hidden = rates[:-1]
        reach = [r["epochs_to_target"] for r in rs]
        rows.append({"config": c, "label": label(c), "n": len(rs), "acc": acc.mean(),
                     "acc_sd": acc.std(ddof=1) if len(rs) > 1 else 0.0,
                     "noisy": 100 * np.mean([r["noisy_accuracy"] for r in rs]),
                     "reach": reach, "rates": rates.tolist(),
                     "in_band": bool(np.all((hidden >= BAND[0]) & (hidden <= BAND[1]))),
                     "dead": 100 * np.mean([np.mean(r["test_dead"][:-1]) for r in rs]),
                     "secs": np.mean([r["seconds"] for r in rs]),
                     "curve": np.mean([r["val_curve"] for r in rs], axis=0).tolist()})
    by_key = {key(r["config"]): r for r in rows}
    lines = ["| data | group | method | seeds | test acc % (mean ± sd) | noisy acc % | "
             f"epochs to target | hidden rates | in [{BAND[0]}, {BAND[1]}] | dead % | AHSAR helps? |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["config"]
        verdict = ""
        if "ahsar" in c["method"]:
            base = dict(c, method=c["method"].replace("+ahsar", "").replace("ahsar", "baseline"))
            base.pop("control", None)
            ref = by_key.get(key(base)) or by_key.get(key(dict(base, group="methods")))
            if ref is not None:
                d = r["acc"] - ref["acc"]
                spread = max(r["acc_sd"], ref["acc_sd"], 0.05)
                verdict = (f"yes, +{d:.2f} pp" if d > spread else
                           f"no, {d:+.2f} pp (within spread)" if d >= -spread else f"no, worse {d:+.2f} pp")
        reach = ", ".join("-" if e is None else str(e) for e in r["reach"])
        lines.append(f"| {c['data']} | {c['group']} | {r['label']} | {r['n']} | "
                     f"{r['acc']:.2f} ± {r['acc_sd']:.2f} | {r['noisy']:.2f} | {reach} | "
                     + " ".join(f"{x:.3f}" for x in r["rates"][:-1])
                     + f" | {'yes' if r['in_band'] else 'no'} | {r['dead']:.1f} | {verdict} |")
    return "\n".join(lines) + "\n", rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    def panel(c):   # the --full runs get their own panel
        return c["data"] + (" full" if c["group"] == "full" else "")
    panels = sorted({panel(r["config"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, p in zip(axes[0], panels):
        d = p.split()[0]
        mine = [r for r in rows if panel(r["config"]) == p]
        colours = plt.get_cmap("tab20").colors
        for i, r in enumerate(mine):
            name = r["config"]["method"] if p.endswith("full") else r["label"]
            style = "-" if "ahsar" in r["config"]["method"] else "--"   # dashed: without AHSAR
            ax.plot(range(1, len(r["curve"]) + 1), [100 * v for v in r["curve"]], style,
                    marker="o", ms=3, color=colours[i % len(colours)], label=name)
        ax.axhline(100 * TARGET[d], color="grey", lw=0.8)
        ax.set(title=f"{p}: validation accuracy (mean of seeds)", xlabel="epoch", ylabel="%")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-samples", type=int, default=15000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    ap.add_argument("--address", default=None, help="run on this Ray cluster (ray.init's address)")
    ap.add_argument("--serial", action="store_true", help="run the trials one by one in this process, no Ray")
    ap.add_argument("--full", action="store_true", help="also the full-data MNIST headline runs")
    ap.add_argument("--full-epochs", type=int, default=20)
    ap.add_argument("--only", action="append", choices=("mnist", "fmnist"))
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    logging.basicConfig(level=logging.WARNING)
    OUT.mkdir(exist_ok=True)
    cache_path = OUT / "train_methods.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    todo = [c for c in configs(args) if key(c) not in cache]
    runner = "serial" if args.serial else args.address or f"local Ray, {args.workers or os.cpu_count()} CPUs"
    print(f"{len(configs(args))} runs, {len(todo)} to do, {runner}", file=sys.stderr)
    from ahsar_deploy.sweep import run_trials
    configs_of: dict[str, list[dict]] = {}
    for c in todo:
        configs_of.setdefault(trial(c).id, []).append(c)
    t0 = time.perf_counter()
    done = []

    def keep(r: dict) -> None:   # here, as each trial finishes (or was finished in TRIALS before)
        for c in configs_of[r["id"]]:
            cache[key(c)] = record(c, r)
            done.append(c)
            if c["group"] == "full":   # the checkpoint mnist_deploy.py deploys
                tmp = OUT / f".mnist_mlp_{c['method']}_seed{c['seed']}.tmp"
                shutil.copyfile(TRIALS / r["checkpoint"], tmp)
                os.replace(tmp, OUT / f"mnist_mlp_{c['method']}_seed{c['seed']}.pt")
            print(f"[{len(done)}/{len(todo)} {time.perf_counter() - t0:.0f} s] {c['data']} {label(c)} "
                  f"seed {c['seed']}: {100 * r['test_accuracy']:.2f} %", file=sys.stderr, flush=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_path)

    if todo:
        summary = run_trials([trial(c) for c in todo], TRIALS, args.address, args.serial, num_cpus=args.workers,
                             measure=measure, on_result=keep, progress=False, source="benchmarks/train_methods.py")
        for r in summary["trials"]:
            if r["id"] in summary["reused"]:
                keep(r)
    table, rows = summarise([cache[key(c)] for c in configs(args)])   # in configs' order, not finishing order
    (OUT / "train_methods.md").write_text(table)
    plot(rows, OUT / "train_methods.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
