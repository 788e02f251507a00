"""MNIST MLP, with and without AHSAR: train (if missing) -> export -> emulator -> Lava -> energy.

For each model: float test accuracy and hidden rates from training; `ahsar-export`
wall time (calibration included, imports excluded); quantized accuracy on the full
10,000-image test set with the bit-exact emulator and its gap to float; Lava on the
first N test images (predictions and spikes compared with the emulator's); energy per
inference from Lava's spike counts on every registered target, and the ANN baseline.

    python benchmarks/mnist_deploy.py [--lava-samples 500] [--methods ahsar,baseline]

The MLPs are benchmarks/results/mnist_mlp_<method>_seed0.pt, the headline models of
`train_methods.py --full` (settings in train_methods.FULL: 784-1000-10, 8 steps,
20 epochs, cosine learning rate, shift augmentation); a missing one is trained here
with the same settings. Writes benchmarks/results/mnist_deploy.md and .json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-samples", type=int, default=500)
    ap.add_argument("--methods", default="ahsar,baseline")
    ap.add_argument("--model", action="append", default=None,
                    help="deploy these checkpoints instead (repeatable); results go to mnist_deploy_extra.*")
    ap.add_argument("--arch", default="mlp", choices=("mlp", "cnn"),
                    help="cnn: mnist_cnn_<method>_seed0.pt (ahsar train --arch cnn --steps 8 --batch 128 "
                         "--epochs 3 --train-samples 30000 --lr-schedule cosine)")
    a = ap.parse_args()
    import hw_targets
    from ahsar_deploy import build, checkpoint, emulator
    from ahsar_deploy.energy_report import count, estimate
    from ahsar_deploy.errors import DeployError
    from ahsar_deploy.train import train
    from exporters import lava
    from train_methods import FULL
    OUT.mkdir(exist_ok=True)
    rows = []
    if a.model:
        jobs = [(checkpoint.load(m)["method"], Path(m)) for m in a.model]
    else:
        jobs = [(m, OUT / f"mnist_{a.arch}_{m}_seed0.pt") for m in a.methods.split(",")]
    for method, model in jobs:
        if not model.is_file() and a.arch == "cnn":
            checkpoint.save(train(data="mnist", method=method, arch="cnn", hidden=(), steps=8, batch=128,
                                  epochs=3, train_samples=30000, seed=0, lr_schedule="cosine",
                                  progress=False), model)
        if not model.is_file():
            print(f"training {model.name} ({FULL['epochs']} epochs) ...", file=sys.stderr, flush=True)
            checkpoint.save(train(method=method, seed=0, progress=False,
                                  **dict(FULL, hidden=tuple(FULL["hidden"]))), model)
        ckpt = checkpoint.load(model)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "build"
            t0 = time.perf_counter()
            build.export(model, "loihi", out, progress=False)
            t_export = time.perf_counter() - t0
            cal = json.loads((out / "calibration.json").read_text())
            graph, _ = build.load(out)
            x, y = build.eval_inputs(graph, None, None)
            t0 = time.perf_counter()
            emu = emulator.run(graph, x)
            t_emu = time.perf_counter() - t0
            acc_emu = float(np.mean(emu[-1].sum(axis=1).argmax(axis=1) == y))
            n = a.lava_samples
            print(f"{method}: Lava on {n} samples ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            got = lava.run(out, x[:n], graph.steps, progress=False)
            t_lava = time.perf_counter() - t0
        pred_lava = got[-1].sum(axis=1).argmax(axis=1)
        pred_emu = emu[-1][:n].sum(axis=1).argmax(axis=1)
        same_spikes = all(np.array_equal(g, e[:n]) for g, e in zip(got, emu))
        counters = count(graph, x[:n], got)
        try:
            energy = {name: estimate(graph, counters, n, hw_targets.get(name)) for name in hw_targets.TARGETS}
        except DeployError as e:      # the energy models cover dense layers only
            print(f"{method}: no energy estimate ({e})", file=sys.stderr)
            energy = {}
        rates = [c["rate"] for c in counters]
        row = {"method": method, "model": model.name,
               "sizes": [graph.n_inputs] + [l.n_out for l in graph.layers],
               "float_test_accuracy": ckpt["test_accuracy"], "train_rates": ckpt["test_rates"],
               "epochs": len(ckpt["history"]),
               "epochs_to_97": next((e["epoch"] for e in ckpt["history"] if e["val_accuracy"] >= 0.97), None),
               "export_s": t_export, "calibration": cal["validation_accuracy"],
               "emulator_test_accuracy": acc_emu, "emulator_s": t_emu,
               "gap_pp": 100 * (ckpt["test_accuracy"] - acc_emu),
               "lava_samples": n, "lava_s": t_lava, "lava_accuracy": float(np.mean(pred_lava == y[:n])),
               "lava_same_predictions": int(np.sum(pred_lava == pred_emu)), "lava_same_spikes": same_spikes,
               "lava_rates": rates, "energy": energy}
        rows.append(row)
        print(f"{method}: float {100 * row['float_test_accuracy']:.2f} %, emulator "
              f"{100 * acc_emu:.2f} % (gap {row['gap_pp']:.2f} pp), Lava same predictions "
              f"{row['lava_same_predictions']}/{n}, spikes identical {same_spikes}", file=sys.stderr, flush=True)
    stem = "mnist_deploy_extra" if a.model else "mnist_deploy" if a.arch == "mlp" else "mnist_deploy_cnn"
    (OUT / f"{stem}.json").write_text(json.dumps(rows, indent=1, default=float))
    lines = ["| model | epochs (to 97 % val) | float test % | emulator test % (10,000) | gap pp | calibration kept | "
             "export s | Lava: same predictions | Lava = emulator spikes | hidden rate on Lava | in [0.05, 0.25] |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        hid = r["lava_rates"][:-1]
        lines.append(f"| {'-'.join(map(str, r['sizes']))} {r['method']} | {r['epochs']} ({r['epochs_to_97'] or '-'}) | "
                     f"{100 * r['float_test_accuracy']:.2f} | "
                     f"{100 * r['emulator_test_accuracy']:.2f} | {r['gap_pp']:.2f} | {r['calibration']['chosen']} | "
                     f"{r['export_s']:.2f} | {r['lava_same_predictions']}/{r['lava_samples']} | "
                     f"{'yes' if r['lava_same_spikes'] else 'NO'} | {' '.join(f'{v:.3f}' for v in hid)} | "
                     f"{'yes' if all(0.05 <= v <= 0.25 for v in hid) else 'no'} |")
    lines += ["", "| model | target | nJ per inference (dynamic) | synaptic ops per inference | "
              "ANN baseline int8 nJ | ratio SNN/ANN |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, e in r["energy"].items():
            snn = 1e9 * e["dynamic_j_per_inference"]
            ann = 1e9 * e["ann_baseline"]["int8_j"]
            lines.append(f"| {r['method']} | {name} | {snn:,.1f} | {e['synaptic_ops_per_inference']:,.0f} | "
                         f"{ann:.1f} | {snn / ann:.1f} |")
    table = "\n".join(lines) + "\n"
    (OUT / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
