"""Energy against accuracy on Loihi, with and without AHSAR, MLP and CNN (issue 21).

The points are the trials of benchmarks/robustness.py (same sweep directory, same cache):
the default MLP (784-1000-10, `ahsar train --data mnist --epochs 5`), the budget MLPs
(784-256-10, MNIST and Fashion-MNIST) and the MNIST CNN (conv 8 5x5 ->
pool -> conv 16 5x5 -> pool -> dense 10), each trained without AHSAR, with it (the
default band [0.05, 0.25] and setpoint 0.15), with its energy setpoint moved down
(`--ahsar-set energy=0.5`, setpoint 0.10; `energy=1`, 0.05 = r_lo), with thresholds that
only rise (`s_min=1`), and with a lower and a higher band (CNN). For each: deployed
accuracy (bit-exact emulator) on the first N test images against Loihi's dynamic energy
per inference from the same spikes (energy_report.estimate, HARDWARE.md's per-operation
figures), the float model's accuracy beside it, mean over seeds.

    python benchmarks/energy_front.py [--plan "default:0,1,2 variant:0,1,2 budget:0,1,2 cnn:0"] [--report-only]

Trains and measures what the cache lacks (as robustness.py does), then writes
benchmarks/results/energy_front.md and energy_front.png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
PLAN = "default:0,1,2 variant:0,1,2 budget:0,1,2 cnn:0"
GROUPS = {("default", "mnist"): "MLP 784-1000-10 (`ahsar train --epochs 5`), MNIST",
          ("budget", "mnist"): "MLP 784-256-10, MNIST", ("budget", "fmnist"): "MLP 784-256-10, Fashion-MNIST",
          ("cnn", "mnist"): "CNN, MNIST"}
SHOWN = ("baseline", "ahsar", "ahsar, raise-only", "ahsar, energy 0.5", "ahsar, energy 1",
         "ahsar, band 0.02-0.10", "ahsar, band 0.15-0.35", "ahsar, bound 1.5")


def points(entries: list[dict]) -> dict[tuple, dict]:
    """(group, data, label) -> means over seeds of deployed and float accuracy (%), dynamic
    energy (uJ per inference), synaptic ops, per-layer deployed rates, seeds."""
    by: dict[tuple, list[dict]] = {}
    for e in entries:
        c = e["config"]
        group = "default" if c["group"] == "variant" else c["group"]   # the variants of the default MLP
        if (group, c["data"]) in GROUPS and c["label"] in SHOWN and "loihi" in e["clean"]:
            by.setdefault((group, c["data"], c["label"]), []).append(e)
    out = {}
    for k, es in by.items():
        dep = 100 * np.array([e["clean"]["deployed"] for e in es])
        out[k] = {"n": len(es), "deployed": dep.mean(), "deployed_sd": dep.std(ddof=1) if len(es) > 1 else 0.0,
                  "float": 100 * np.mean([e["clean"]["float"] for e in es]),
                  "uj": 1e6 * np.mean([e["clean"]["loihi"]["dynamic_j"] for e in es]),
                  "synops": np.mean([e["clean"]["loihi"]["synaptic_ops"] for e in es]),
                  "rates": np.mean([e["clean"]["loihi"]["rates"] for e in es], axis=0).tolist(),
                  "corrupted": 100 * np.mean([np.mean([v["deployed"] for v in e["corrupted"].values()])
                                              for e in es])}
    return out


def write(pts: dict[tuple, dict], out: Path) -> str:
    lines = ["| network | method | seeds | deployed % (mean ± sd) | float % | Loihi dynamic µJ / inference | "
             "synaptic ops / inference | rates per layer (deployed) | corrupted deployed % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (g, d), name in GROUPS.items():
        for lab in SHOWN:
            p = pts.get((g, d, lab))
            if p is None:
                continue
            lines.append(f"| {name} | {lab} | {p['n']} | {p['deployed']:.2f} ± {p['deployed_sd']:.2f} | "
                         f"{p['float']:.2f} | {p['uj']:.2f} | {p['synops']:,.0f} | "
                         f"{' '.join(f'{r:.3f}' for r in p['rates'])} | {p['corrupted']:.1f} |")
    text = "\n".join(lines) + "\n"
    (out / "energy_front.md").write_text(text)
    _plot(pts, out / "energy_front.png")
    return text


def _plot(pts, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nets = [k for k in GROUPS if any(p[:2] == k for p in pts)]
    if not nets:
        return
    cols = min(2, len(nets))
    rows = -(-len(nets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    marks = dict(zip(SHOWN, "sooD^vPX"))
    handles = {}
    for ax, (g, d) in zip(axes.flat, nets):
        for i, lab in enumerate(SHOWN):
            p = pts.get((g, d, lab))
            if p is None:
                continue
            col = "black" if lab == "baseline" else f"C{i}"
            h = ax.errorbar(p["uj"], p["deployed"], yerr=p["deployed_sd"], fmt=marks[lab], color=col, ms=6,
                            capsize=2)
            ax.plot(p["uj"], p["float"], marks[lab], mfc="none", color=col, ms=6)
            handles[lab] = h
        ax.set_title(GROUPS[(g, d)].replace("`", ""), fontsize=9)
        ax.set_xlabel("Loihi dynamic energy per inference (µJ)", fontsize=8)
        ax.set_ylabel("test accuracy %", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(nets):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=7,
               title="filled: deployed (emulator, mean ± sd over seeds); hollow: float model", title_fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=PLAN)
    ap.add_argument("--report-only", action="store_true", help="only write the table and plot from the cache")
    a = ap.parse_args()
    if not a.report_only:   # train and measure what is missing, exactly as robustness.py does
        subprocess.run([sys.executable, str(HERE / "robustness.py"), "--plan", a.plan, "--no-report"], check=True)
    cache = OUT / "robustness.json"
    if not cache.is_file():
        print("no measurements yet: run without --report-only", file=sys.stderr)
        return 1
    print(write(points(list(json.loads(cache.read_text()).values())), OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
