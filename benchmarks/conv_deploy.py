"""Deploy machinery for an MNIST-sized CNN: fold, calibrate, emulator, Lava (equal spikes),
and the NIR round trip through norse, on a network with random weights (the trained CNN
is benchmarks/mnist_deploy.py's business; this measures the conv path itself).

Network (the training CNN's shape, snn.py cnn_specs): input 1x28x28 -> conv 8 x 5x5 ->
sum pool 2 -> conv 16 x 5x5 -> sum pool 2 -> flatten -> dense 10, both poolings fused
into the next layer (passes/fuse.py). Inputs: Bernoulli(0.15) spikes, 16 steps.
Writes the table to benchmarks/results/conv_deploy.md.
Usage: python benchmarks/conv_deploy.py [--calib 512] [--emulator 512] [--lava 16]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ahsar_deploy import emulator
from ahsar_deploy.ir import DeployGraph, Layer
from ahsar_deploy.passes.calibrate import calibrate
from ahsar_deploy.passes.check import check
from ahsar_deploy.passes.fold import fold
from ahsar_deploy.passes.fuse import fuse_pool
from exporters import lava
from exporters import nir as nir_exporter
from exporters import norse as norse_backend
from hw_targets import LOIHI


def network(rng) -> DeployGraph:
    c1 = Layer(name="conv0", weight=rng.normal(0, 0.5, (8, 1, 5, 5)), threshold=rng.uniform(0.8, 1.2, 8),
               i_decay=1024, v_decay=512, kind="conv", in_shape=(1, 28, 28))
    c2 = Layer(name="conv1", weight=rng.normal(0, 0.15, (16, 8, 5, 5)), threshold=rng.uniform(0.8, 1.2, 16),
               i_decay=1024, v_decay=512, kind="conv", in_shape=(8, 12, 12))
    d = Layer(name="fc2", weight=rng.normal(0, 0.1, (10, 16 * 4 * 4)), threshold=np.ones(10),
              i_decay=1024, v_decay=512)
    layers = (c1, fuse_pool(c2, (8, 24, 24), 2, "sum"), fuse_pool(d, (16, 8, 8), 2, "sum"))
    return DeployGraph(layers=layers, n_inputs=784, steps=16, dataset="random", encoding="rate",
                       method="baseline", source_sha256="")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calib", type=int, default=512)
    ap.add_argument("--emulator", type=int, default=512)
    ap.add_argument("--lava", type=int, default=16)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    g = network(rng)
    x = rng.random((max(a.calib, a.emulator, a.lava), 16, 784)) < 0.15
    rows = []
    t = time.perf_counter()
    q, reports = calibrate(fold(g), x[:a.calib], LOIHI)
    q = check(q, LOIHI)
    t_cal = time.perf_counter() - t
    head = (f"network 1x28x28 -> conv8 5x5 -> pool2 -> conv16 5x5 -> pool2 -> dense10 (pools fused); "
            f"neurons {[l.n_out for l in q.layers]}, {q.notes['cores']} Loihi cores")
    rows.append((f"calibrate, {a.calib} samples × 16 steps", f"{t_cal:.0f} s; spike agreement "
                 + " / ".join(f"{r.spike_agreement:.4f}" for r in reports)))
    t = time.perf_counter()
    s = emulator.run(q, x[:a.emulator])
    t_em = time.perf_counter() - t
    rows.append(("emulator (integer, torch cpu)", f"{a.emulator} × 16 steps in {t_em:.1f} s, about "
                 f"{a.emulator * 16 / t_em:,.0f} samples × steps per second"))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        lava.write_netx(q, d / "model.net")
        nir_exporter.write(q, d / "model.nir")
        t = time.perf_counter()
        lv = lava.run(d, x[:a.lava], 16, timeout_s=3600, progress=False)
        t_lv = time.perf_counter() - t
        same = all(np.array_equal(l, e[:a.lava]) for l, e in zip(lv, s))
        rows.append((f"Lava fixed_pt, {a.lava} samples × 16 steps", f"{t_lv:.0f} s with start-up; spikes "
                     + ("identical to the emulator" if same else "DIFFERENT from the emulator")))
        nr = norse_backend.run_nir(d / "model.nir", x[:a.emulator])
        fl = emulator.run(emulator.float_view(q), x[:a.emulator])
        eq = all(np.array_equal(n_, f) for n_, f in zip(nr, fl))
        rows.append(("norse from model.nir (float64)", "spikes identical to the build's float model" if eq
                     else "spikes DIFFERENT from the build's float model"))
    lines = [head, "", "| stage | result |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    print("\n".join(lines))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "conv_deploy.md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
