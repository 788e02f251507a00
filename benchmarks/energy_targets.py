"""Energy per inference of one network on every chip model, against the ANN baseline.

For each checkpoint (given with --model, or trained here with each --methods entry):
export to Loihi, run the test split on a backend (the bit-exact emulator by default,
or Lava), count spikes and synaptic operations on the spikes that backend produced, and
price them with every energy model in hw_targets/ (loihi: Davies 2018; loihi2: an
estimate with Loihi 1's per-operation energies; truenorth: 26 pJ per synaptic event,
all-in; spinnaker, spinnaker2: Höppner 2019) and the 45 nm ANN baseline (Horowitz 2014).
Prints one Markdown table and writes it to benchmarks/results/energy_targets.md.

    python benchmarks/energy_targets.py [--data digits] [--methods baseline ahsar]
        [--epochs 30] [--hidden 128,64] [--train-samples N] [--samples N] [--backend emulator|lava]
    python benchmarks/energy_targets.py --model mnist-ahsar.pt --model mnist-baseline.pt
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import hw_targets
from ahsar_deploy import build, checkpoint
from ahsar_deploy import energy_report as energy
from ahsar_deploy.train import train
from exporters import BACKENDS


def nj(x) -> str:
    return "-" if x is None else f"{x * 1e9:,.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[], help="existing checkpoint(s)")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--methods", nargs="+", default=["baseline", "ahsar"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", default="128,64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-samples", type=int, default=None, help="first N training samples only")
    ap.add_argument("--samples", type=int, default=None, help="test samples (default all)")
    ap.add_argument("--backend", default="emulator", choices=sorted(BACKENDS))
    a = ap.parse_args()
    names = list(hw_targets.ENERGY_MODELS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [(Path(m).name, Path(m)) for m in a.model]
        for method in ([] if a.model else a.methods):
            ck = train(data=a.data, method=method, hidden=tuple(int(h) for h in a.hidden.split(",")),
                       epochs=a.epochs, seed=a.seed, train_samples=a.train_samples, progress=False)
            path = Path(tmp) / f"{a.data}-{method}.pt"
            checkpoint.save(ck, path)
            models.append((f"{a.data} {method} seed {a.seed}", path))
        for label, path in models:
            out = Path(tmp) / f"build-{len(rows)}"
            build.export(path, "loihi", out, progress=False)
            graph, _ = build.load(out)
            x, y = build.eval_inputs(graph, None, a.samples)
            t0 = time.perf_counter()
            spikes = BACKENDS[a.backend](out, graph, x, 3600, False)
            secs = time.perf_counter() - t0
            counters = energy.count(graph, x, spikes)
            rep = energy.estimate(graph, counters, len(y), hw_targets.LOIHI)
            per = {t["target"]: t for t in energy.compare_targets(graph, counters, len(y))}
            acc = float(np.mean(spikes[-1].sum(1).argmax(1) == y))
            rows.append((label, graph, len(y), acc, rep, per, secs))
    sizes = lambda g: "-".join(str(n) for n in [g.n_inputs] + [l.n_out for l in g.layers])
    lines = []

    def emit(line: str = "") -> None:   # print, and keep for the results file
        print(line)
        lines.append(line)

    emit(f"backend {a.backend}; nJ per inference from operations (static energy in the last "
         f"columns is an estimate: static power x busiest-core time per step)\n")
    emit("| model | network | samples | accuracy % | rates per layer | syn ops / inf | "
         + " | ".join(f"{n}{' (est.)' if 'ESTIMATE' in hw_targets.ENERGY_MODELS[n].energy_note else ''} nJ"
                      for n in names)
         + " | ANN int8 nJ | ANN int8+SRAM nJ | ANN fp32 nJ | loihi / ANN int8 | "
         + " | ".join(f"{n} static nJ" for n in names if hw_targets.ENERGY_MODELS[n].static_power_w) + " |")
    emit("|" + "---|" * (10 + len(names) + sum(1 for n in names if hw_targets.ENERGY_MODELS[n].static_power_w)))
    for label, g, n, acc, rep, per, secs in rows:
        b = rep["ann_baseline"]
        cells = [nj(per[t]["dynamic_j"]) if per[t]["fits"] else "does not fit" for t in names]
        static = [nj(per[t].get("static_j")) for t in names if hw_targets.ENERGY_MODELS[t].static_power_w]
        emit(f"| {label} | {sizes(g)} | {n} | {100 * acc:.2f} | "
             + " ".join(f"{l['rate']:.3f}" for l in rep["layers"])
             + f" | {rep['synaptic_ops_per_inference']:,.0f} | " + " | ".join(cells)
             + f" | {nj(b['int8_j'])} | {nj(b['int8_sram_j'])} | {nj(b['fp32_j'])} | "
             f"{rep['snn_over_ann_int8']:.0f}x | " + " | ".join(static) + " |")
    for label, g, n, acc, rep, per, secs in rows:
        nb = rep["neurobench"]
        emit(f"\n{label}: {a.backend} run {secs:.2f} s; NeuroBench: activation sparsity "
             f"{nb['ActivationSparsity']:.4f}, effective ACs/inf "
             f"{nb['SynapticOperations']['Effective_ACs']:,.0f} (dense "
             f"{nb['SynapticOperations']['Dense']:,}), footprint {nb['Footprint']:,} B, "
             f"connection sparsity {nb['ConnectionSparsity']}; Loihi cores {rep['cores']}")
    out = Path(__file__).parent / "results" / "energy_targets.md"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
