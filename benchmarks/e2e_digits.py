"""End-to-end figures on scikit-learn digits: train -> export -> Lava, per seed.

Prints a Markdown table: float test accuracy, integer-emulator and Lava accuracy on the
full test split (360 samples), spikes identical Lava vs emulator, export wall time,
Lava seconds per sample; then the per-layer Loihi energy table of the first seed, from
the spikes Lava produced. Each seed trains exactly what `make demo` trains (`ahsar train
--data digits --method ahsar --arch mlp --epochs 30 --seed S`, the CLI's defaults), so the
seed-0 row is the demo's figures (tests/test_readme_figures.py checks both against the
README). The kernels are pinned (ahsar_deploy/kernels.py), as in the CLI, so these figures
are the ones any x86-64 CPU gives. Writes benchmarks/results/e2e_digits.md and .json.
Usage: python benchmarks/e2e_digits.py [--seeds 0 1] [--epochs 30]
"""
from __future__ import annotations

from ahsar_deploy import kernels

kernels.pin()   # before torch and numpy load: the figures any x86-64 CPU gives (kernels.py)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import hw_targets  # noqa: E402
from ahsar_deploy import build, checkpoint, emulator  # noqa: E402
from ahsar_deploy import energy_report as energy  # noqa: E402
from ahsar_deploy import cli  # noqa: E402
from exporters import lava  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--method", default="ahsar")
    a = ap.parse_args()
    rows, tables = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            t0 = time.perf_counter()
            model = Path(tmp) / f"m{seed}.pt"
            assert cli.main(["train", "--data", "digits", "--method", a.method, "--arch", "mlp", "--epochs",
                             str(a.epochs), "--seed", str(seed), "-o", str(model), "-q"]) == 0
            t_train = time.perf_counter() - t0
            ck = checkpoint.load(model)
            out = Path(tmp) / f"b{seed}"
            t0 = time.perf_counter()
            build.export(model, "loihi", out, progress=False)
            t_export = time.perf_counter() - t0
            graph, _ = build.load(out)
            x, y = build.eval_inputs(graph, None, None)
            emu = emulator.run(graph, x)
            t0 = time.perf_counter()
            got = lava.run(out, x, graph.steps, progress=False)
            t_lava = time.perf_counter() - t0
            report = energy.estimate(graph, energy.count(graph, x, got), len(y), hw_targets.LOIHI)
            tables.append(energy.table(report))
            same = all(np.array_equal(g, e) for g, e in zip(got, emu))
            acc = lambda s: float(np.mean(s[-1].sum(1).argmax(1) == y))
            rows.append((seed, ck["test_accuracy"], acc(emu), acc(got), same, t_train, t_export,
                         t_lava / len(y), [float(s.mean()) for s in got]))
    lines = ["| seed | float % | emulator % | Lava % | Lava = emulator | train s | export s "
             "| Lava s/sample | Lava rates per layer |", "|---|---|---|---|---|---|---|---|---|"]
    for s, f, e, l, same, tt, te, tl, rates in rows:
        lines.append(f"| {s} | {100 * f:.2f} | {100 * e:.2f} | {100 * l:.2f} | {'yes' if same else 'NO'} "
                     f"| {tt:.1f} | {te:.2f} | {tl:.3f} | {' '.join(f'{r:.3f}' for r in rates)} |")
    state = kernels.state()
    lines += ["", f"Kernels {'pinned' if state['pinned'] else 'native'} ({state['aten']}, MKL_CBWR "
                  f"{state['mkl_cbwr']}, OpenBLAS {state['openblas']}); CPU {kernels.cpu_name()}."]
    print("\n".join(lines))
    print(f"\nseed {a.seeds[0]}, Lava:\n{tables[0]}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e_digits.md").write_text("\n".join(lines) + "\n")
    keys = ("seed", "float", "emulator", "lava", "identical", "train_s", "export_s", "lava_s_per_sample", "rates")
    (RESULTS / "e2e_digits.json").write_text(json.dumps({"epochs": a.epochs, "method": a.method,
                                                         "kernels": state, "cpu": kernels.cpu_name(), "rows": [
        dict(zip(keys, r)) for r in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
