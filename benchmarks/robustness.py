"""Robustness to input corruptions, with and without AHSAR, float model and deployed build (issue 21).

Trials (run through `ahsar sweep`'s machinery, kept in runs/robustness/trials/):
- budget: train_methods.py's fixed budget (MLP 784-256-10, 8 steps, rate coding, batch
  128, Adam 2e-3, 4 epochs on the first 15,000 training images) for every threshold
  method with and without AHSAR, MNIST and Fashion-MNIST;
- default: the README's `ahsar train --data D --method M --epochs 5` (784-1000-10, 8
  steps, batch 128, Adam 1e-3 cosine: train.default_options), baseline and AHSAR;
- recipe: the README's MNIST recipe, `ahsar train --data mnist --method M --augment-shift 1
  --epochs 20` (seed 0 by default: 16 minutes of one core per trial here);
- variant: the rule variants (VARIANTS: raise-only thresholds, the energy setpoint) at
  the default settings, MNIST; the budget group has them too (AHSAR on baseline thresholds),
  and a tight scale bound s in [1/1.5, 1.5] (TIGHT);
- cnn: issue 21's MNIST CNN (conv 8 5x5 -> pool -> conv 16 5x5 -> pool -> dense 10, 8
  steps, batch 128, 2 epochs on 15,000 images): baseline, AHSAR, the variants, the bands;
- ablation (MNIST, the budget above): AHSAR with one part changed (`--ahsar-set`,
  `--control`): proportional control, no diffusion, no global gain, no scale bound, a
  lower and a higher band.
Seeds 0, 1, 2 (recipe, cnn: 0; ablation: 0, 1) by default (PLAN; `--plan "default:0 budget:0,1"`).

Each checkpoint is exported (`ahsar-export --target loihi`, calibration on the
checkpoint's data) and both the float model (torch) and the deployed integer build (the
bit-exact emulator) run on the first --samples test images, clean (with Loihi's dynamic energy per inference from
the emulator's spikes, energy_report.estimate) and under every
corruption of ahsar_deploy.corrupt at severities 1-3 (one fixed corruption seed per
image set, the same for every model). Per hidden layer, on clean and corrupted inputs:
firing rate, fraction of neurons that never fire, the membrane in units of the
threshold (mean v/theta, and the fraction of neuron-steps within 20 % of the threshold,
where small input changes flip spikes), the fraction of clean hidden spikes that change
under the corruption, and the threshold in units of each neuron's input weight norm.

Results are cached per trial in benchmarks/results/robustness.json (delete an entry or
the file to measure again); writes robustness.md (tables) and robustness.png.

    python benchmarks/robustness.py [--plan "recipe:0 default:0,1,2 ..."]
        [--samples 2000] [--workers N | --serial] [--train-only]
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

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
TRIALS = Path(__file__).resolve().parents[1] / "runs" / "robustness"
METHODS = ("baseline", "ahsar", "rouser", "rouser+ahsar", "hoyer", "hoyer+ahsar")
BUDGET = {"epochs": 4, "train_samples": 15000, "hidden": [256], "steps": 8, "batch": 128}
CNN = {"arch": "cnn", "hidden": [], "channels": [8, 16], "steps": 8, "batch": 128, "epochs": 2,
       "train_samples": 15000}
DEFAULT = {"epochs": 5, "hidden": None, "steps": None, "batch": None, "lr": None, "lr_schedule": None}
ABLATIONS = {   # label -> (control, --ahsar-set)
    "proportional": ("proportional", None),
    "no diffusion": (None, "diffusion=0"),
    "no global gain": (None, "eta_g=0"),
    "no scale bound": (None, "s_max=1000000,s_min=1e-06"),
    "band 0.02-0.10": (None, "r_lo=0.02,r_hi=0.1"),
    "band 0.15-0.35": (None, "r_lo=0.15,r_hi=0.35"),
}
VARIANTS = {   # the rule variants of the README's AHSAR section (label -> --ahsar-set)
    "raise-only": "s_min=1",
    "energy 0.5": "energy=0.5",
    "energy 1": "energy=1",
}
TIGHT = {"bound 1.5": "s_max=1.5,s_min=0.6666666666666666"}   # budget group only: s within [1/1.5, 1.5]
CORRUPTION_SEED = 2026
PLAN = "recipe:0 default:0 variant:0 budget:0 cnn:0 default:1,2 budget:1,2 variant:1,2 ablation:0,1"
NEAR = 0.2   # "near threshold": |v/theta - 1| <= NEAR
PROBES = ("contrast:2", "gaussian_noise:2")   # corruptions the causes tables look at


def configs(plan: str) -> list[dict]:
    """The trials of a plan "GROUP:SEED,SEED GROUP:SEED ...", in its order (repeats dropped)."""
    out = []
    for item in plan.split():
        group, _, seeds = item.partition(":")
        for seed in (int(s) for s in seeds.split(",")):
            if group in ("recipe", "default"):
                extra = {"epochs": 20, "augment_shift": 1} if group == "recipe" else {}
                for data in ("mnist",) if group == "recipe" else ("mnist", "fmnist"):
                    for m in ("baseline", "ahsar"):
                        out.append({"group": group, "label": m, "data": data, "method": m, **DEFAULT, **extra,
                                    "seed": seed})
            elif group == "variant":   # the variants at the default settings, MNIST
                for lab, settings in VARIANTS.items():
                    out.append({"group": group, "label": f"ahsar, {lab}", "data": "mnist", "method": "ahsar",
                                **DEFAULT, "ahsar_set": settings, "seed": seed})
            elif group == "cnn":   # issue 21's CNN: conv 8 5x5 -> pool -> conv 16 5x5 -> pool -> dense 10
                for lab, settings in (("baseline", None), ("ahsar", None), *VARIANTS.items(),
                                      *((k, v[1]) for k, v in ABLATIONS.items() if k.startswith("band"))):
                    m = "baseline" if lab == "baseline" else "ahsar"
                    out.append({"group": group, "label": lab if m == "baseline" or lab == "ahsar" else f"ahsar, {lab}",
                                "data": "mnist", "method": m, **CNN, "ahsar_set": settings, "seed": seed})
            elif group == "ablation":
                for lab, (control, settings) in ABLATIONS.items():
                    out.append({"group": group, "label": f"ahsar, {lab}", "data": "mnist", "method": "ahsar",
                                **BUDGET, "control": control, "ahsar_set": settings, "seed": seed})
            elif group == "budget":
                for data in ("mnist", "fmnist"):
                    for m in METHODS:
                        out.append({"group": group, "label": m, "data": data, "method": m, **BUDGET, "seed": seed})
                    for lab, settings in {**VARIANTS, **TIGHT}.items():
                        out.append({"group": group, "label": f"ahsar, {lab}", "data": data, "method": "ahsar",
                                    **BUDGET, "ahsar_set": settings, "seed": seed})
            else:
                raise SystemExit(f"unknown group {group!r}: recipe, default, variant, ablation, budget")
    return out


def trial(c: dict):
    from ahsar_deploy.sweep import Trial
    return Trial.make({k: v for k, v in c.items() if k not in ("group", "label")},
                      name=f"{c['group']} {c['data']} {c['label']} seed {c['seed']}")


def _hidden_stats(model, spikes, clean_spikes) -> list[dict]:
    """Per hidden layer: rate, dead fraction, membrane stats, spike change vs clean."""
    out = []
    for l, layer in enumerate(model.layers[:-1]):
        s = spikes[l]
        v = layer.v_trace
        out.append({"rate": float(s.mean()), "dead": float((s.max(axis=(0, 1)) == 0).mean()),
                    "v_mean": v["sum"] / v["n"], "near": v["near"] / v["n"],
                    "changed": None if clean_spikes is None else float((s != clean_spikes[l]).mean())})
    return out


def float_run(model, x: np.ndarray, y: np.ndarray, steps: int, encoding: str):
    """The float model on intensities x (N, F) with labels y (train.evaluate): readout
    counts (N, C) and hidden spikes (N, T, n) bool per hidden layer; each hidden layer's
    membrane sums in layer.v_trace."""
    import torch
    from ahsar_deploy.train import evaluate
    hidden = model.layers[:-1]
    sums = [{"sum": 0.0, "near": 0.0, "n": 0} for _ in hidden]
    counts, spikes = [], [[] for _ in hidden]

    def keep(c, sp):
        counts.append(c.numpy())
        for l, layer in enumerate(hidden):
            spikes[l].append(sp[l].numpy().astype(bool))
            v = torch.stack(layer.v_trace)
            sums[l]["sum"] += float(v.double().sum())
            sums[l]["near"] += float(((v - 1).abs() <= NEAR).sum())
            sums[l]["n"] += v.numel()

    for layer in hidden:
        layer.keep_v = True
    try:
        evaluate(model, x, y, steps, encoding, each=keep)
    finally:
        for layer, s in zip(hidden, sums):
            layer.keep_v = False
            layer.v_trace = s
    return np.concatenate(counts), [np.concatenate(s) for s in spikes]


def assess(c: dict, ckpt_path: Path, n: int) -> dict:
    """Float and deployed accuracy, clean and under every corruption, with hidden-layer stats."""
    import hw_targets
    from ahsar_deploy import api, build, checkpoint, emulator
    from ahsar_deploy.energy_report import count, estimate
    from ahsar_deploy import data as datamod
    from ahsar_deploy.corrupt import KINDS, SEVERITIES, corrupt
    ck = checkpoint.load(ckpt_path)
    model = checkpoint.build_model(ck)
    ds = datamod.load(c["data"])
    steps, enc = ck["data"]["steps"], ck["data"].get("encoding", "rate")
    x, y = np.asarray(ds.test.x[:n]), np.asarray(ds.test.y[:n])
    thresholds = []
    for layer, th in zip(model.layers[:-1], model.thresholds()[:-1]):
        w = layer.syn.weight.detach().double().reshape(len(th) if not layer.is_conv else th.numel(), -1)
        thresholds.append({"theta": float(th.mean()), "theta_over_wnorm": float((th / w.norm(dim=1)).mean())})
    last = ck["history"][-1] if ck.get("history") else {}
    out = {"clean": None, "corrupted": {}, "thresholds": thresholds,
           "ahsar": {"gain": last.get("gain"), "scales": last.get("scales"),
                     "gains": [e.get("gain") for e in ck.get("history", [])]}}
    with tempfile.TemporaryDirectory(prefix="robust-") as tmp:
        t0 = time.perf_counter()
        api.export(ckpt_path, "loihi", Path(tmp) / "b")
        graph, _ = build.load(Path(tmp) / "b")
        export_s = time.perf_counter() - t0
        clean_spikes = None
        for kind, sev in [("clean", 0)] + [(k, s) for k in KINDS for s in SEVERITIES]:
            xc = x if sev == 0 else corrupt(x, kind, sev, ds.shape, seed=CORRUPTION_SEED)
            counts, spikes = float_run(model, xc, y, steps, enc)
            enc_x = datamod.encode(xc, steps, enc)
            dep = emulator.run(graph, enc_x, device="cpu")
            r = {"float": float(np.mean(counts.argmax(1) == y)),
                 "deployed": float(np.mean(dep[-1].sum(axis=1).argmax(axis=1) == y)),
                 "hidden": _hidden_stats(model, spikes, clean_spikes)}
            if sev == 0:
                out["clean"], clean_spikes = r, spikes
                rep = estimate(graph, count(graph, enc_x, dep), len(x), hw_targets.energy_model("loihi"), dep)
                r["loihi"] = {"dynamic_j": rep["dynamic_j_per_inference"],
                              "synaptic_ops": rep["synaptic_ops_per_inference"],
                              "rates": [float(s.mean()) for s in dep]}
            else:
                out["corrupted"][f"{kind}:{sev}"] = r
    out["export_seconds"] = export_s
    out["samples"] = int(n)
    return out


def _kinds(entries: list[dict]) -> list[str]:
    return list(dict.fromkeys(k.split(":")[0] for e in entries for k in e["corrupted"]))


def _mean_sd(v) -> str:
    v = 100 * np.asarray(v, dtype=float)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _rows(entries: list[dict]) -> dict[tuple, list[dict]]:
    rows: dict[tuple, list[dict]] = {}
    for e in sorted(entries, key=lambda e: e["config"]["seed"]):
        c = e["config"]
        rows.setdefault((c["group"], c["data"], c["label"]), []).append(e)
    return rows


def write(entries: list[dict], out: Path) -> None:
    """robustness.md: accuracy table (deployed per corruption, means over severities 1-3 and
    seeds), severities of the default models, and the hidden-layer causes table; robustness.png."""
    if not entries:
        return
    kinds, rows = _kinds(entries), _rows(entries)
    n = entries[0]["samples"]
    lines = [f"Deployed (emulator) accuracy %, first {n:,} test images, mean ± sd over seeds; each corruption "
             "column averages severities 1-3. Float: the trained model on the same inputs.", "",
             "| group | data | method | seeds | clean float | clean deployed | " + " | ".join(kinds)
             + " | corrupted deployed | corrupted float |", "|---" * (8 + len(kinds)) + "|"]

    def corr(e, kind=None, what="deployed"):
        return np.mean([v[what] for k, v in e["corrupted"].items() if kind is None or k.startswith(kind + ":")])

    for (g, d, lab), es in rows.items():
        cells = [_mean_sd([e["clean"]["float"] for e in es]), _mean_sd([e["clean"]["deployed"] for e in es])]
        cells += [f"{100 * np.mean([corr(e, k) for e in es]):.1f}" for k in kinds]
        cells += [_mean_sd([corr(e) for e in es]), _mean_sd([corr(e, what="float") for e in es])]
        lines.append(f"| {g} | {d} | {lab} | {len(es)} | " + " | ".join(cells) + " |")
    sev = sorted({int(k.split(":")[1]) for e in entries for k in e["corrupted"]})
    lines += ["", "Default models (`ahsar train --data D --method M --epochs 5`), deployed accuracy % per "
              "severity, mean over seeds:", "",
              "| data | method | " + " | ".join(f"{k} {s}" for k in kinds for s in sev) + " |",
              "|---" * (2 + len(kinds) * len(sev)) + "|"]
    for (g, d, lab), es in rows.items():
        if g == "default":
            lines.append(f"| {d} | {lab} | " + " | ".join(
                f"{100 * np.mean([e['corrupted'][f'{k}:{s}']['deployed'] for e in es]):.1f}"
                for k in kinds for s in sev) + " |")
    for probe in PROBES:
        lines += _causes(rows, probe)
    (out / "robustness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(rows, kinds, sev, out / "robustness.png")


def _causes(rows: dict, probe: str) -> list[str]:
    """The hidden-layer table for one corruption, and the rank correlation over the MLPs
    between the threshold height theta/||w|| and the accuracy that corruption costs."""
    lines = ["", f"Hidden layer(s), float model, clean → {probe} (mean over seeds): rate, dead fraction, "
             f"mean v/θ, fraction of neuron-steps with |v/θ − 1| ≤ {NEAR}, fraction of hidden spikes changed "
             "by the corruption, θ in units of the neuron's input weight norm:", "",
             "| group | data | method | rate | dead % | v/θ | near θ % | spikes changed % | θ/‖w‖ | "
             "accuracy drop pp (deployed) |", "|---" * 10 + "|"]
    pairs: dict[str, tuple[list, list]] = {}
    for (g, d, lab), es in rows.items():
        if probe not in es[0]["corrupted"]:
            continue
        h0 = [e["clean"]["hidden"] for e in es]
        h1 = [e["corrupted"][probe]["hidden"] for e in es]
        layers = len(h0[0])

        def pair(key, scale=1.0, fmt=".3f"):
            return ", ".join(f"{scale * np.mean([h[l][key] for h in h0]):{fmt}} → "
                             f"{scale * np.mean([h[l][key] for h in h1]):{fmt}}" for l in range(layers))
        changed = ", ".join(f"{100 * np.mean([h[l]['changed'] for h in h1]):.1f}" for l in range(layers))
        tw = ", ".join(f"{np.mean([e['thresholds'][l]['theta_over_wnorm'] for e in es]):.2f}" for l in range(layers))
        drop = 100 * np.mean([e["clean"]["deployed"] - e["corrupted"][probe]["deployed"] for e in es])
        lines.append(f"| {g} | {d} | {lab} | {pair('rate')} | {pair('dead', 100, '.1f')} | {pair('v_mean', fmt='.2f')} | "
                     f"{pair('near', 100, '.1f')} | {changed} | {tw} | {drop:.1f} |")
        if g != "cnn":
            heights, drops = pairs.setdefault(d, ([], []))
            for e in es:
                heights.append(e["thresholds"][0]["theta_over_wnorm"])
                drops.append(e["clean"]["deployed"] - e["corrupted"][probe]["deployed"])
    from scipy.stats import spearmanr
    for d, (heights, drops) in pairs.items():
        if len(heights) > 2:
            rho = spearmanr(heights, drops)
            lines += ["", f"{d}, the {len(heights)} MLP models (every seed): Spearman rank correlation between the "
                      f"hidden layer's θ/‖w‖ and the accuracy {probe} costs: ρ = {rho.statistic:.2f} "
                      f"(p = {rho.pvalue:.1g})."]
    return lines


def _plot(rows, kinds, sev, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datas = [d for d in ("mnist", "fmnist") if any(g == "default" and dd == d for g, dd, _ in rows)]
    if not datas:
        return
    fig, axes = plt.subplots(len(datas), len(kinds), figsize=(2.2 * len(kinds), 2.4 * len(datas)),
                             squeeze=False, sharey="row")
    for i, d in enumerate(datas):
        for j, k in enumerate(kinds):
            ax = axes[i][j]
            for (g, dd, lab), es in rows.items():
                if g != "default" or dd != d:
                    continue
                for what, style in (("deployed", "-"), ("float", ":")):
                    ys = [100 * np.mean([e["clean"][what] for e in es])] + [
                        100 * np.mean([e["corrupted"][f"{k}:{s}"][what] for e in es]) for s in sev]
                    ax.plot([0, *sev], ys, style, marker="o" if what == "deployed" else None, ms=3,
                            color="C1" if "ahsar" in lab else "C0", label=f"{lab} {what}")
            ax.set_title(f"{d}: {k}", fontsize=8)
            ax.set_xticks([0, *sev])
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("accuracy %", fontsize=8)
            if i == len(datas) - 1:
                ax.set_xlabel("severity", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("default models (`ahsar train --epochs 5`), with and without AHSAR: mean over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=PLAN, help=f"groups and seeds in the order to train them (default {PLAN!r})")
    ap.add_argument("--samples", type=int, default=2000, help="test images per condition (first N)")
    ap.add_argument("--workers", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    ap.add_argument("--serial", action="store_true", help="train one by one in this process, no Ray")
    ap.add_argument("--train-only", action="store_true", help="train the missing trials, measure nothing")
    ap.add_argument("--report-only", action="store_true", help="write the tables from the cache")
    ap.add_argument("--no-report", action="store_true", help="train and measure only (energy_front.py)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cs = list({trial(c).id: c for c in configs(a.plan)}.values())
    OUT.mkdir(exist_ok=True)
    cache_path = OUT / "robustness.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    from ahsar_deploy.sweep import run_trials
    by_id = {trial(c).id: c for c in cs}
    t0 = time.perf_counter()

    def keep(r: dict) -> None:
        c = by_id[r["id"]]
        if a.train_only or a.report_only or r["id"] in cache and cache[r["id"]]["samples"] == a.samples:
            return
        m = assess(c, TRIALS / r["checkpoint"], a.samples)
        cache[r["id"]] = {"config": c, "train": {k: r[k] for k in ("test_accuracy", "test_rates", "test_dead",
                                                                    "train_seconds")}, **m}
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_path)
        corr = np.mean([v["deployed"] for v in m["corrupted"].values()])
        print(f"[{len(cache)} {time.perf_counter() - t0:.0f} s] {c['group']} {c['data']} {c['label']} seed "
              f"{c['seed']}: clean float {100 * m['clean']['float']:.2f} deployed {100 * m['clean']['deployed']:.2f}"
              f", corrupted deployed {100 * corr:.2f} %", file=sys.stderr, flush=True)

    if not a.report_only:
        from ahsar_deploy.sweep import _finished
        for c in cs:   # trials finished earlier are measured first, before new ones train
            done = _finished(TRIALS, trial(c), None)
            if done is not None:
                keep(done)
        summary = run_trials([trial(c) for c in cs], TRIALS, None, a.serial, num_cpus=a.workers,
                             on_result=keep, progress=False, source="benchmarks/robustness.py")
        for r in summary["trials"]:
            if r["id"] in summary["reused"]:
                keep(r)
    if not (a.train_only or a.no_report):
        write([cache[i] for i in by_id if i in cache], OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
