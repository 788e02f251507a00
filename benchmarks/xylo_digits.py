"""Training with Xylo's neuron closes the float -> XyloSim gap (issue 19).

Data: sdigits (8x8 digits fed row by row: 8 binary inputs, 8 steps) restricted to
classes 0-7, so the readout fits Xylo Audio 2's 8 output neurons (written as an .npz,
the route of `--data FILE.npz`; the split is sdigits' own). Networks: mlp 8-32-8 and
rnn 8-32-8 (32 recurrent hidden neurons: fan-out 32, under Xylo's 64), default decays
(i_decay 1024, v_decay 512), baseline thresholds or AHSAR, seed 0, each trained with
--neuron loihi (reset to zero, one spike per step) and --neuron xylo (reset by
subtraction, up to 31 events per hidden neuron per step, 1 per output neuron). Per run:

    ahsar train --data sd8.npz --arch ARCH --hidden 32 --method METHOD --neuron NEURON \\
        --epochs E --seed 0 -o model.pt
    ahsar-export model.pt --target xylo-audio2 -o build/

then the whole test split on rockpool's XyloSim (exporters/xylo.run_build). Reports the
float model's test accuracy (the checkpoint's, torch), XyloSim's test accuracy, the
share of test samples where both predict the same class, the fidelity findings of the
export, and the hidden layer's test rate (events per neuron per step).

CPU time, measured on the shared 2-core machine (two workers, one torch thread each, nice
10), default --epochs 40: 5-8 CPU s per run (training, export, XyloSim on 289 samples),
50 CPU s for the 8 runs, under 2 min of wall time. Writes benchmarks/results/xylo_digits.md
(table) and xylo_digits.json.

    python benchmarks/xylo_digits.py [--epochs 40] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def make_data(path: Path) -> Path:
    """sdigits, classes 0-7 of each split, as an .npz (x uint8 spikes (N, 8, 8), y)."""
    from ahsar_deploy import data
    ds = data.load("sdigits")
    arrays = {}
    for split in ("train", "val", "test"):
        sp = getattr(ds, split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = sp.x[sp.y < 8].astype(np.uint8), sp.y[sp.y < 8]
    np.savez(path, **arrays)
    return path


def run_one(c: dict) -> dict:
    """Train, export to xylo-audio2, run XyloSim on the test split; one configuration."""
    import torch
    torch.set_num_threads(1)
    from ahsar_deploy import build, checkpoint, data
    from ahsar_deploy.train import train
    from exporters import xylo
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="xylo-digits-") as tmp:
        ckpt = train(data=c["data"], arch=c["arch"], method=c["method"], hidden=(c["hidden"],),
                     epochs=c["epochs"], seed=c["seed"], neuron=c["neuron"], progress=False)
        model_path = Path(tmp) / "model.pt"
        checkpoint.save(ckpt, model_path)
        t_train = time.perf_counter() - t0
        b = Path(tmp) / "build"
        build.export(model_path, "xylo-audio2", b, progress=False)
        cal = json.loads((b / "calibration.json").read_text())
        graph, _ = build.load(b)
        ds = data.load(c["data"])
        x, y = data.encode(ds.test.x, graph.steps, graph.encoding), ds.test.y
        sim = xylo.run_build(b, graph, x, "xylosim")
        pred_sim = sim[-1].sum(axis=1).argmax(axis=1)
        model = checkpoint.build_model(ckpt)
        with torch.no_grad():
            counts, _ = model(torch.from_numpy(x).float())
        pred_float = counts.numpy().argmax(axis=1)   # numpy's tie rule, as the chip's readout
    return {"config": c, "float_test_accuracy": ckpt["test_accuracy"],
            "float_test_accuracy_recomputed": float(np.mean(pred_float == y)),
            "xylosim_test_accuracy": float(np.mean(pred_sim == y)),
            "same_prediction": float(np.mean(pred_sim == pred_float)), "test_samples": int(len(y)),
            "test_rates": ckpt["test_rates"],
            "findings": sorted({f["cause"] for f in cal["fidelity"]["findings"]}),
            "train_s": t_train, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def table(results: list[dict]) -> str:
    c0 = results[0]["config"]
    lines = [f"sdigits classes 0-7 ({results[0]['test_samples']} test samples), 8-{c0['hidden']}-8, "
             f"{c0['epochs']} epochs, seed {c0['seed']}; XyloSim = rockpool's XyloSim on the xylo-audio2 "
             f"build of the checkpoint.", "",
             "| arch | method | neuron | float test % | XyloSim test % | gap pp | same prediction % | "
             "hidden rate (events/neuron/step) | export findings | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["config"]
        f, s = 100 * r["float_test_accuracy"], 100 * r["xylosim_test_accuracy"]
        lines.append(f"| {c['arch']} | {c['method']} | {c['neuron']} | {f:.2f} | {s:.2f} | {f - s:+.2f} | "
                     f"{100 * r['same_prediction']:.2f} | {r['test_rates'][0]:.3f} | "
                     f"{', '.join(r['findings']) or '-'} | {r['cpu_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--archs", default="mlp,rnn")
    ap.add_argument("--methods", default="baseline,ahsar")
    ap.add_argument("--neurons", default="loihi,xylo")
    ap.add_argument("--out", default=str(OUT / "xylo_digits.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="xylo-digits-data-") as tmp:
        path = make_data(Path(tmp) / "sd8.npz")
        configs = [{"data": str(path), "arch": a, "method": m, "neuron": n, "hidden": args.hidden,
                    "epochs": args.epochs, "seed": args.seed}
                   for a in args.archs.split(",") for m in args.methods.split(",") for n in args.neurons.split(",")]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(run_one, configs))
    for r in results:
        r["config"]["data"] = "sdigits classes 0-7"
    text = table(results)
    cpu = sum(r["cpu_s"] for r in results) + time.process_time() - c0
    text += (f"\nCPU time {cpu:.0f} s in all ({len(results)} runs, {args.workers} workers), wall "
             f"{time.perf_counter() - t0:.0f} s.\n")
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
