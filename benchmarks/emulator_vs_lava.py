"""Integer emulator vs Lava fixed-point simulation on the same network and inputs.

Loads a model (default: the MNIST MLP with AHSAR that benchmarks/mnist_deploy.py
writes, else a digits model trained here), times `ahsar-export` (calibration included,
imports excluded; target under 5 s), runs N test samples through both backends in one
process, checks the spikes are identical and prints samples x time steps per second for
each and the speed-up (target at least 100x). Usage:
    python benchmarks/emulator_vs_lava.py [--model model.pt] [--samples 200]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ahsar_deploy import build, checkpoint, emulator
from ahsar_deploy.passes import qat, refit  # noqa: F401  (imported lazily by export: time excluded)
from ahsar_deploy.train import train
from exporters import lava


def main() -> None:
    ap = argparse.ArgumentParser()
    mnist = Path(__file__).resolve().parent / "results" / "mnist_mlp_ahsar_seed0.pt"
    ap.add_argument("--model", default=str(mnist) if mnist.is_file() else None,
                    help="checkpoint (default: the MNIST AHSAR MLP if built, else train digits)")
    ap.add_argument("--samples", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else Path(tmp) / "model.pt"
        if not a.model:
            checkpoint.save(train(epochs=30, progress=False), model)
        out = Path(tmp) / "build"
        t0 = time.perf_counter()
        build.export(model, "loihi", out, progress=False)
        t_export = time.perf_counter() - t0
        graph, _ = build.load(out)
        x, _ = build.eval_inputs(graph, None, a.samples)
        work = len(x) * graph.steps
        t0 = time.perf_counter()
        emu = emulator.run(graph, x)
        t_emu = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = lava.run(out, x, graph.steps, progress=False)
        t_lava = time.perf_counter() - t0
    same = all(np.array_equal(g, e) for g, e in zip(got, emu))
    sizes = "-".join(str(n) for n in [graph.n_inputs] + [l.n_out for l in graph.layers])
    print(f"network {sizes}, {len(x)} samples x {graph.steps} steps, spikes identical: "
          f"{'yes' if same else 'NO'}; ahsar-export {t_export:.2f} s after imports, calibration "
          f"included ({'under' if t_export < 5 else 'OVER'} the 5 s target)")
    print("| backend | seconds | samples x steps per second |")
    print("|---|---|---|")
    print(f"| emulator (numpy) | {t_emu:.3f} | {work / t_emu:,.0f} |")
    print(f"| Lava fixed_pt (incl. process start) | {t_lava:.2f} | {work / t_lava:,.0f} |")
    print(f"speed-up: {t_lava / t_emu:.0f}x ({'at least' if t_lava / t_emu >= 100 else 'BELOW'} the 100x target)")


if __name__ == "__main__":
    main()
