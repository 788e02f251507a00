"""Sequential-MNIST recurrent models deployed: float (torch), emulator on the whole test
set, Lava on its first samples, spike for spike.

Takes checkpoints trained with the README's recipe (`ahsar train --data smnist --arch rnn
--method ahsar --hidden 128 --bias --i-decay 2048 --v-decay 1024 --batch 64 --epochs 20
--lr-schedule cosine --seed S`, about 27 minutes each on this 2-core machine), exports each
with default options, runs the bit-exact emulator on all 10,000 test samples and Lava on
the first --lava samples, and prints a Markdown table; writes
benchmarks/results/smnist_deploy.md and .json.
Usage: python benchmarks/smnist_deploy.py MODEL.pt [MODEL.pt ...] [--lava 100]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ahsar_deploy import build, checkpoint, emulator
from exporters import lava

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--lava", type=int, default=100)
    a = ap.parse_args()
    lines = ["| | float (torch) | deployed (emulator, 10,000) | Lava (first 100) | Lava = emulator |",
             "|---|---|---|---|---|"]
    rows = []
    for path in a.models:
        ck = checkpoint.load(path)
        label = f"{'AHSAR' if 'ahsar' in ck['method'] else ck['method']}, seed {ck['seed']}"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "b"
            t0 = time.perf_counter()
            build.export(path, "loihi", out, progress=False)
            t_export = time.perf_counter() - t0
            graph, _ = build.load(out)
            x, y = build.eval_inputs(graph, None, None)
            t0 = time.perf_counter()
            emu = emulator.run(graph, x)
            t_emu = time.perf_counter() - t0
            n = min(a.lava, len(x))
            t0 = time.perf_counter()
            got = lava.run(out, x[:n], graph.steps, progress=False)
            t_lava = time.perf_counter() - t0
        acc = lambda s, yy: 100 * float(np.mean(s[-1].sum(1).argmax(1) == yy))
        same = all(np.array_equal(g, e[:n]) for g, e in zip(got, emu))
        spikes = sum(int(g.sum()) for g in got)
        rows.append({"model": label, "file": Path(path).name, "float": 100 * ck["test_accuracy"],
                     "emulator": acc(emu, y), "lava": acc(got, y[:n]), "emulator_same_samples": acc(emu, y)
                     if n == len(x) else acc([e[:n] for e in emu], y[:n]), "identical": same,
                     "lava_spikes": spikes, "export_s": t_export, "emulator_s": t_emu, "lava_s": t_lava})
        r = rows[-1]
        lines.append(f"| {label} | {r['float']:.2f} % | {r['emulator']:.2f} % | {r['lava']:.2f} % (emulator "
                     f"{r['emulator_same_samples']:.2f} % on the same {n}) | "
                     + (f"yes: all {spikes:,} spikes of the {n} samples" if same else "NO") + " |")
        print(f"{label}: export {t_export:.1f} s, emulator {t_emu:.1f} s, Lava {t_lava:.0f} s", flush=True)
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "smnist_deploy.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "smnist_deploy.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
