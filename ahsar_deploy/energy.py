"""Counters from a target run and the energy they cost on a chip.

Counted per layer from the spikes the backend produced (never the training model):
- synaptic ops: input spikes x fan-out actually routed (dense: every output neuron);
- spikes out; neuron updates, split into active (the layer received at least one input
  spike in that step) and inactive (no input that step): our approximation of Davies
  2018's active/inactive update, since per-compartment activity is not observable here.
Energy = sum of counts x per-operation energy of the target (hw_targets/loihi.py),
with every output spike delivered once within a tile (hops not modelled).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hw_targets import LoihiTarget
from hw_targets.cmos45 import BASELINE

from .ir import DeployGraph


def count(graph: DeployGraph, inputs: np.ndarray, layer_spikes: list[np.ndarray]) -> list[dict]:
    """Per-layer totals over all samples; inputs (N, T, F), layer_spikes[l] (N, T, n_l)."""
    rows = []
    x = inputs
    for layer, s in zip(graph.layers, layer_spikes):
        in_per_step = x.reshape(x.shape[0], x.shape[1], -1).sum(axis=2)   # (N, T)
        steps_with_input = int(np.count_nonzero(in_per_step))
        total_steps = in_per_step.size
        rows.append({
            "layer": layer.name, "neurons": layer.n_out,
            "input_spikes": int(in_per_step.sum()),
            "synaptic_ops": int(in_per_step.sum()) * layer.n_out,
            "spikes": int(s.sum()),
            "updates_active": steps_with_input * layer.n_out,
            "updates_inactive": (total_steps - steps_with_input) * layer.n_out,
            "rate": float(s.mean()),
        })
        x = s
    return rows


def estimate(graph: DeployGraph, counters: list[dict], samples: int, target: LoihiTarget) -> dict:
    """Energy per inference (J) per layer and in total, plus the ANN baseline."""
    e = target.energy_j
    layers = []
    for layer, c in zip(graph.layers, counters):
        parts = {
            "synaptic": c["synaptic_ops"] * e["synaptic_op"],
            "neuron_active": c["updates_active"] * e["neuron_update_active"],
            "neuron_inactive": c["updates_inactive"] * e["neuron_update_inactive"],
            "spikes": c["spikes"] * e["spike_in_tile"],
        }
        per_inf = {k: v / samples for k, v in parts.items()}
        layers.append({**c, "energy_j": per_inf, "total_j": sum(per_inf.values()),
                       "train_rate": layer.train_rate})
    macs = sum(l.n_in * l.n_out for l in graph.layers)
    total = sum(l["total_j"] for l in layers)
    return {
        "target": target.name, "samples": samples, "steps": graph.steps,
        "layers": layers, "total_j_per_inference": total,
        "synaptic_ops_per_inference": sum(c["synaptic_ops"] for c in counters) / samples,
        "static_power_w": target.static_power_w,
        "ann_baseline": {"macs": macs, "int8_j": macs * BASELINE.mac_int8_j,
                         "fp32_j": macs * BASELINE.mac_fp32_j,
                         "source": "Horowitz ISSCC 2014, 45 nm"},
    }


def table(report: dict) -> str:
    head = (f"{'layer':<8} {'neurons':>7} {'rate':>6} {'train':>6} {'syn ops':>10} {'spikes':>8} "
            f"{'nJ/inf':>8}")
    lines = [f"energy on {report['target']} per inference ({report['samples']} samples, "
             f"{report['steps']} steps each)", head, "-" * len(head)]
    for l in report["layers"]:
        tr = f"{l['train_rate']:.3f}" if l["train_rate"] is not None else "  -"
        lines.append(f"{l['layer']:<8} {l['neurons']:>7} {l['rate']:>6.3f} {tr:>6} "
                     f"{l['synaptic_ops'] / report['samples']:>10.0f} "
                     f"{l['spikes'] / report['samples']:>8.1f} {l['total_j'] * 1e9:>8.3f}")
    b = report["ann_baseline"]
    lines += ["-" * len(head),
              f"total {report['total_j_per_inference'] * 1e9:.3f} nJ per inference "
              f"(dynamic; static {report['static_power_w'] * 1e3:.0f} mW per chip not included)",
              f"ANN baseline, same layers, {b['macs']} MACs: int8 {b['int8_j'] * 1e9:.3f} nJ, "
              f"fp32 {b['fp32_j'] * 1e9:.3f} nJ ({b['source']}; memory traffic not counted)"]
    return "\n".join(lines)


BAND = (0.05, 0.25)        # AHSAR's target band (METHODS.md section 1)
RATE_TOLERANCE = 0.25      # on-target rate may differ from training's by 25 % (relative)


def check_sparsity(report: dict, graph: DeployGraph, band: tuple[float, float] = BAND,
                   tolerance: float = RATE_TOLERANCE) -> list[dict]:
    """Per layer: does the on-target rate match training's, and sit in the band?

    Regulated (AHSAR) layers must be inside the band; every layer with a training rate
    must be within `tolerance` (relative) of it.
    """
    out = []
    for layer, row in zip(graph.layers, report["layers"]):
        rate, train = row["rate"], layer.train_rate
        reasons = []
        if train is not None and abs(rate - train) > tolerance * train:
            reasons.append(f"rate {rate:.3f} vs {train:.3f} in training (tolerance {tolerance:.0%})")
        if layer.regulated and not band[0] <= rate <= band[1]:
            reasons.append(f"rate {rate:.3f} outside the AHSAR band [{band[0]}, {band[1]}]")
        out.append({"layer": layer.name, "rate": rate, "train_rate": train,
                    "regulated": layer.regulated, "ok": not reasons, "reasons": reasons})
    return out


def plot(report: dict, path) -> None:
    """PNG: per-layer firing rate against the band and training, energy by operation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [l["layer"] for l in layers]
    idx = np.arange(len(names))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.axhspan(*BAND, color="tab:green", alpha=0.15, label="AHSAR band")
    a.bar(idx - 0.2, [l["rate"] for l in layers], 0.4, label=f"on {report['target']}")
    a.bar(idx + 0.2, [l["train_rate"] or 0 for l in layers], 0.4, label="training")
    a.set_xticks(idx, names)
    a.set_ylabel("spikes per neuron per step")
    a.set_title("firing rate per layer")
    a.legend()
    kinds = list(layers[0]["energy_j"])
    bottom = np.zeros(len(layers))
    for k in kinds:
        vals = np.array([l["energy_j"][k] * 1e9 for l in layers])
        b.bar(idx, vals, 0.6, bottom=bottom, label=k)
        bottom += vals
    b.set_xticks(idx, names)
    b.set_ylabel("nJ per inference")
    base = report["ann_baseline"]
    b.set_title(f"energy: total {report['total_j_per_inference'] * 1e9:.0f} nJ "
                f"(ANN int8 {base['int8_j'] * 1e9:.1f} nJ)")
    b.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(f".tmp-{Path(path).name}")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)               # never a half-written PNG
