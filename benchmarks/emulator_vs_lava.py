"""Export time, and the integer emulator's throughput against Lava and the machine's GEMM.

Loads a model (default: the MNIST 784-1000-10 AHSAR MLP that benchmarks/mnist_deploy.py
writes, else the one `ahsar train --data mnist --method ahsar --epochs 5` gives, which
benchmarks/train_defaults.py writes; if both are missing, one of the same shape trained
here for --epochs), times `ahsar-export` (calibration included, imports excluded, best of
3 with no float run kept between them; target under 3 s), then runs the same N test
samples through
- the numpy reference emulator (emulator.run(..., device=None)),
- the torch emulator on the CPU with 1 thread and with all of torch's threads (the neuron
  update in lif_kernel's fused loop), again with the neuron update in torch's ops (what
  other devices run), and on every CUDA device torch sees,
- Lava's fixed-point simulation (first --lava-samples samples, process start included),
checks that all spikes are identical and prints samples x time steps per second, and the
same work counted as dense synaptic multiply-adds per second (sum over layers of
n_in * n_out per sample-step) beside a plain float32 GEMM of the first layer's shape
(torch.matmul, (N*T, n_in) @ (n_in, n_out)) timed in the same run.
Writes benchmarks/results/emulator_vs_lava.md and .json. Usage:
    python benchmarks/emulator_vs_lava.py [--model model.pt] [--samples 2000] [--lava-samples 200]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ahsar_deploy import build, checkpoint, emulator, torch_emulator
from ahsar_deploy.passes import qat, refit  # noqa: F401  (imported lazily by export: time excluded)
from ahsar_deploy.train import train
from exporters import lava

RESULTS = Path(__file__).resolve().parent / "results"


def _best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    found = [p for p in (RESULTS / "mnist_mlp_ahsar_seed0.pt", RESULTS / "train_defaults_defaults.pt") if p.is_file()]
    ap.add_argument("--model", default=str(found[0]) if found else None,
                    help="checkpoint (default: the MNIST AHSAR MLP of mnist_deploy.py or train_defaults.py "
                         "if built, else train one here)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs when training the MNIST model here")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--lava-samples", type=int, default=200)
    a = ap.parse_args()
    rows, threads = [], torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else Path(tmp) / "model.pt"
        trained = "" if a.model else f" (trained here: {a.epochs} epochs)"
        if not a.model:
            checkpoint.save(train(data="mnist", method="ahsar", hidden=(1000,), steps=8, batch=128,
                                  epochs=a.epochs, lr_schedule="cosine", augment_shift=1, progress=False), model)
        out = Path(tmp) / "build"
        def export():   # as a fresh `ahsar-export` process would: no float run kept from the last one
            emulator._FLOAT_RUNS.clear()
            return build.export(model, "loihi", out, progress=False, force=True)

        t_export, _ = _best_of(export)
        graph, _ = build.load(out)
        x, _ = build.eval_inputs(graph, None, a.samples)
        work = len(x) * graph.steps
        macs = sum(l.n_in * l.n_out for l in graph.layers)        # dense multiply-adds per sample-step
        l0 = graph.layers[0]
        xs = torch.rand(work, l0.n_in)
        w = torch.rand(l0.n_in, l0.n_out)
        t_gemm, _ = _best_of(lambda: xs @ w)
        gemm = work * l0.n_in * l0.n_out / t_gemm
        t_np, ref = _best_of(lambda: emulator.run(graph, x, device=None), repeat=1)
        rows.append(("emulator, numpy reference", t_np, ref, len(x)))
        torch.set_num_threads(1)
        t1, s1 = _best_of(lambda: torch_emulator.run(graph, x))
        torch.set_num_threads(threads)
        rows.append(("emulator, torch cpu, 1 thread", t1, s1, len(x)))
        tn, sn = _best_of(lambda: torch_emulator.run(graph, x))
        rows.append((f"emulator, torch cpu, {threads} threads", tn, sn, len(x)))
        torch_emulator.FUSED = False      # the neuron update in torch's ops, as on other devices
        tu, su = _best_of(lambda: torch_emulator.run(graph, x))
        torch_emulator.FUSED = True
        rows.append((f"emulator, torch cpu, {threads} threads, neuron update in torch ops", tu, su, len(x)))
        for i in range(torch.cuda.device_count()):
            tc, sc = _best_of(lambda: torch_emulator.run(graph, x, device=f"cuda:{i}"))
            rows.append((f"emulator, torch cuda:{i} ({torch.cuda.get_device_name(i)})", tc, sc, len(x)))
        xl = x[:a.lava_samples]
        t0 = time.perf_counter()
        got = lava.run(out, xl, graph.steps, progress=False)
        rows.append(("Lava fixed_pt (incl. process start)", time.perf_counter() - t0, got, len(xl)))
    same = all(all(np.array_equal(g, r[:len(g)]) for g, r in zip(s, ref)) for _, _, s, _ in rows)
    sizes = "-".join(str(n) for n in [graph.n_inputs] + [l.n_out for l in graph.layers])
    source = f" ({Path(a.model).name})" if a.model else ""
    head = (f"network {sizes}{trained}{source}, {len(x)} samples x {graph.steps} steps (Lava: {len(xl)}), "
            f"spikes identical on every backend: {'yes' if same else 'NO'}; ahsar-export {t_export:.2f} s "
            f"after imports, calibration included ({'under' if t_export < 3 else 'OVER'} the 3 s target); "
            f"float32 GEMM ({work} x {l0.n_in}) @ ({l0.n_in} x {l0.n_out}), {threads} threads: "
            f"{gemm / 1e9:.1f} G multiply-adds/s")
    lines = [head, "", "| backend | seconds | samples x steps per second | dense synaptic multiply-adds per second "
             "| vs float32 GEMM |", "|---|---|---|---|---|"]
    table = []
    for name, secs, _, n in rows:
        rate = n * graph.steps / secs
        table.append({"backend": name, "seconds": secs, "sample_steps_per_s": rate,
                      "dense_macs_per_s": rate * macs, "vs_gemm": rate * macs / gemm})
        lines.append(f"| {name} | {secs:.3f} | {rate:,.0f} | {rate * macs / 1e9:.1f} G | {rate * macs / gemm:.2f}x |")
    speedup = rows[-1][1] / rows[-1][3] / (tn / len(x))
    lines += ["", f"torch emulator ({threads} threads) vs Lava: {speedup:,.0f}x per sample-step; vs the numpy "
              f"reference: {t_np / tn:.1f}x"]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "emulator_vs_lava.md").write_text(text + "\n")
    (RESULTS / "emulator_vs_lava.json").write_text(json.dumps({
        "network": sizes, "model": Path(a.model).name if a.model else f"trained here, {a.epochs} epochs",
        "samples": len(x), "steps": graph.steps, "lava_samples": len(xl), "identical": same,
        "export_s": t_export, "gemm_macs_per_s": gemm, "threads": threads, "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
