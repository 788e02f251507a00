"""Issue 20's benchmark table: export time, emulator throughput per device, training time
to the stated accuracy, and a Ray sweep against the same trials one by one, in one table.

Measures nothing itself: it reads what three benchmarks wrote in benchmarks/results/
(run them first; each row names its source):
    python benchmarks/emulator_vs_lava.py    # export time, emulator per device, GEMM
    python benchmarks/train_defaults.py      # training time and deployed accuracy, export command
    python benchmarks/sweep_ray.py           # Ray sweep against serial
Writes benchmarks/results/speed_summary.md. Usage: python benchmarks/speed_summary.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("emulator_vs_lava", "train_defaults", "sweep_ray")


def rows(emu: dict, train: dict, sweep: dict) -> list[tuple[str, str, str]]:
    """(what, figure, source benchmark) per row, from the three benchmarks' JSON results."""
    out = [(f"`ahsar-export` of the MNIST {emu['network']} MLP, calibration included, after imports "
            f"(best of 3 in one process; goal under 3 s)", f"{emu['export_s']:.2f} s", "emulator_vs_lava")]
    for r in train["rows"]:
        out.append((f"`ahsar-export` as a whole command, imports included ({r['name']} model)",
                    f"{r['export_s']:.1f} s", "train_defaults"))
    gemm = emu["gemm_macs_per_s"]
    out.append((f"float32 GEMM of the first layer's shape, {emu['threads']} threads (the yardstick)",
                f"{gemm / 1e9:.1f} G multiply-adds/s", "emulator_vs_lava"))
    for r in emu["rows"]:
        if r["backend"].startswith("emulator, torch"):
            out.append((f"{r['backend']}: samples x steps per second (dense multiply-adds, vs the GEMM)",
                        f"{r['sample_steps_per_s']:,.0f} ({r['dense_macs_per_s'] / 1e9:.1f} G, "
                        f"{r['vs_gemm']:.2f}x)", "emulator_vs_lava"))
    if not any("cuda" in r["backend"] for r in emu["rows"]):
        out.append(("emulator, torch cuda", "not measured: no GPU on this machine", "emulator_vs_lava"))
    for r in train["rows"]:
        t = "-" if r["train_s"] is None else f"{r['train_s']:.0f} s"
        out.append((f"`{r['command']}`: training time to {100 * r['deployed']:.2f} % deployed "
                    f"(emulator, {r['test_samples']:,} test images)", t, "train_defaults"))
    g = sweep["grid"]
    out.append((f"`ahsar sweep`, {sweep['trials']} trials ({g['data']}, {' / '.join(g['method'])} x seeds "
                f"{', '.join(map(str, g['seeds']))}, {g['epochs']} epochs): Ray against one by one",
                f"{sweep['ray_wall_s']:.1f} s against {sweep['serial_wall_s']:.1f} s ({sweep['speedup']:.2f}x; "
                f"results identical: {'yes' if sweep['identical'] else 'NO'})", "sweep_ray"))
    return out


def main() -> int:
    found = {}
    for name in SOURCES:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            print(f"{path}: missing; run python benchmarks/{name}.py first", file=sys.stderr)
            return 1
        found[name] = json.loads(path.read_text())
    lines = ["| measure | figure | from benchmarks/ |", "|---|---|---|"]
    lines += [f"| {what} | {fig} | {src}.py |" for what, fig, src in
              rows(found["emulator_vs_lava"], found["train_defaults"], found["sweep_ray"])]
    text = "\n".join(lines) + "\n\nEach figure as its benchmark measured it on this machine; see that " \
                              "benchmark's own table for the conditions (load, model, samples).\n"
    (RESULTS / "speed_summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
