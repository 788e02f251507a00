"""Counters from a target run, NeuroBench-style metrics, and what they cost on a chip.

Counted per layer and time step from the spikes the backend produced (Lava or the
bit-exact emulator, never the training model), summed over samples:
- input_spikes, spikes: spikes into and out of the layer;
- synaptic_ops: input spikes x fan-out actually routed. netx builds a Lava Dense
  process, which stores the full weight matrix, so every input spike reaches every
  output neuron of the layer, zero weights included; for a conv layer, every output
  whose window holds the spike (Lava's conv computes every kernel tap); a layer with
  recurrent weights also routes each of its own spikes to all its neurons (netx's
  RecurrentDense), counted in the step the spike is emitted;
- synaptic_ops_nonzero: the same with nonzero weights only (NeuroBench's effective
  accumulates, below);
- neuron updates: every neuron is updated every step (Lava's LIF), split into active
  (the layer received at least one input or recurrent spike that step) and inactive (none): our
  approximation of Davies 2018's active/inactive update, as per-compartment activity
  is not observable here.

NeuroBench metrics (Yik et al., Nat Commun 16:1545, 2025; ../shared/HARDWARE.md
section 5), on the deployed integer network, recurrent weights included. Names as the `neurobench` package (2.3) reports them (tests/test_neurobench.py checks the
values against its own implementation on the same network and spikes):
- ActivationSparsity: zero outputs / all outputs of every spiking layer, over steps
  and samples;
- SynapticOperations: per inference, Effective_ACs (binarized inputs x binarized
  weights, summed; inputs are spikes so all are ACs, Effective_MACs 0) and Dense (all-ones
  inputs and weights, per layer and step: n_in x n_out for dense; for conv the kernel taps
  that land on the input, not on its zero padding, as NeuroBench runs the layer itself);
  bias is absent;
- Footprint: bytes of the deployed parameters: weights at the target's weight width in
  whole bytes, per layer vth (4 B) and two decays (2 B each); Footprint_float32 is the same
  parameters as float32 (NeuroBench on a torch copy counts these plus the neuron
  library's own buffers);
- ConnectionSparsity: zero weights / all weights, round(., 4).

Energy = sum over operations of count x the target's energy per operation
(hw_targets/); a chip whose synapses skip zero weights (TrueNorth's crossbar) is
charged per synaptic_ops_nonzero instead of synaptic_ops. Spike messages: each output spike goes once to every core of the next
layer (passes/map.py), the last layer's once to the output, each costed as a spike
within a tile (hops not modelled). Static energy = static power per chip x the chips the
network uses (passes/map.py) x an estimated time per inference: each step lasts as long
as the busiest core's operations (time per operation of the target); barrier
synchronisation, chip-to-chip latency and host I/O are not included, so it is a lower bound.

Chips: a network larger than one chip is placed on several (passes/map.py: layers in
order, cores filled chip by chip). Spikes that cross chips are counted by
inter_chip_spikes (its docstring states the rule) and reported per inference. Each is
already priced as a spike message above; what crossing a chip boundary costs on top is
the target's inter_chip_message_j, and where that is None (no published figure: every
target today) it is not counted, and the report says so.
"""
from __future__ import annotations

import math

import numpy as np

import hw_targets
from hw_targets.cmos45 import BASELINE

from . import interrupts
from .errors import DeployError
from .ir import DeployGraph
from .passes.map import cores_per_chip, map_layers

STEP_KEYS = ("input_spikes", "spikes", "synaptic_ops", "synaptic_ops_nonzero",
             "updates_active", "updates_inactive")
# energy table key -> counter key
OPS = {"synaptic_op": "synaptic_ops", "synaptic_event": "synaptic_ops_nonzero",
       "neuron_update_active": "updates_active", "neuron_update_inactive": "updates_inactive",
       "spike_in_tile": "spike_messages"}


def macs(layer) -> int:
    """Multiply-accumulates of one float ANN pass of the layer: every output neuron times
    its fan-in (dense: n_out x n_in; conv: C_out H_out W_out x C_in kh kw)."""
    return layer.n_out * layer.fan_in


def _conv_events_per_step(layer, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Per step, synaptic events of a conv layer summed over samples: each input spike
    times the outputs whose window holds it with a kernel entry of 1 (0/1 kernel)."""
    ones = layer.with_(weight=kernel, vth=None, weight_exp=0)
    out = np.zeros(x.shape[1], dtype=np.int64)
    chunk = max(1, (1 << 22) // max(1, x.shape[1] * layer.n_out))
    for i in range(0, x.shape[0], chunk):     # float32 exact: counts < 2**24
        interrupts.check()
        y = ones.synaptic_input(x[i:i + chunk], np.float32)
        out += np.rint(y.sum(axis=(0, 2), dtype=np.float64)).astype(np.int64)
    return out


def count(graph: DeployGraph, inputs: np.ndarray, layer_spikes: list[np.ndarray]) -> list[dict]:
    """Per-layer counts, in total and per time step (summed over samples).

    inputs (N, T, F), layer_spikes[l] (N, T, n_l), both 0/1."""
    rows = []
    x = inputs.reshape(inputs.shape[0], inputs.shape[1], -1)
    for layer, s in zip(graph.layers, layer_spikes):
        n = layer.n_out
        s = s.reshape(s.shape[0], s.shape[1], -1)
        in_per_step = x.sum(axis=2, dtype=np.int64)               # (N, T)
        own = s.sum(axis=2, dtype=np.int64)                        # (N, T) the layer's own spikes
        fed_back = np.zeros_like(own)                              # recurrent input: own spikes of t-1
        if layer.recurrent is not None:
            fed_back[:, 1:] = own[:, :-1]
        active = np.count_nonzero(in_per_step + fed_back, axis=0)  # samples with input, per step
        if layer.kind == "conv":   # Lava's conv computes every kernel tap: routed = window count
            w = np.asarray(layer.weight)
            routed = _conv_events_per_step(layer, x, np.ones(w.shape))
            nonzero = _conv_events_per_step(layer, x, (w != 0).astype(np.float64))
        else:
            fan_nonzero = np.count_nonzero(np.asarray(layer.weight), axis=0).astype(np.int64)  # (n_in,)
            routed = in_per_step.sum(axis=0) * n
            nonzero = x.sum(axis=0, dtype=np.int64) @ fan_nonzero
        if layer.recurrent is not None:   # each spike is routed to all n neurons of its own layer
            routed = routed + own.sum(axis=0) * n
            nonzero = nonzero + s.sum(axis=0, dtype=np.int64) @ np.count_nonzero(
                np.asarray(layer.recurrent), axis=0).astype(np.int64)
        step = {
            "input_spikes": in_per_step.sum(axis=0),
            "spikes": own.sum(axis=0),
            "synaptic_ops": routed,
            "synaptic_ops_nonzero": nonzero,
            "updates_active": active * n,
            "updates_inactive": (x.shape[0] - active) * n,
        }
        rows.append(_row(layer, {k: [int(v) for v in step[k]] for k in STEP_KEYS}, s.shape[0]))
        x = s
    return rows


def _row(layer, step: dict, samples: int) -> dict:
    """One layer's counters: totals and rate from the per-step counts (lists of ints)."""
    n = layer.n_out
    return {"layer": layer.name, "neurons": n, "fan_in": layer.n_in,
            **{k: sum(v) for k, v in step.items()},
            "rate": sum(step["spikes"]) / (n * len(step["spikes"]) * samples), "per_step": step}


def neurobench(graph: DeployGraph, counters: list[dict], samples: int, target) -> dict:
    """NeuroBench's static and workload metrics of the deployed network (see module doc)."""
    outputs = sum(l.n_out * graph.steps * samples for l in graph.layers)
    weights = [np.asarray(w) for l in graph.layers for w in (l.weight, l.recurrent) if w is not None]
    n_w = sum(w.size for w in weights)
    w_bytes = math.ceil(target.weight_bits / 8)
    return {
        "ActivationSparsity": 1 - sum(c["spikes"] for c in counters) / outputs,
        "SynapticOperations": {
            "Effective_ACs": sum(c["synaptic_ops_nonzero"] for c in counters) / samples,
            "Effective_MACs": 0.0,
            # all-ones inputs and weights: taps on a conv's zero padding do not count
            "Dense": sum(l.synaptic_ops(np.ones((1, 1, l.n_in))) + l.recurrent_synaptic_ops(np.ones((1, 1, l.n_out)))
                         for l in graph.layers) * graph.steps},
        "Footprint": n_w * w_bytes + len(graph.layers) * (4 + 2 + 2),
        "Footprint_float32": 4 * (n_w + 3 * len(graph.layers)),
        "ConnectionSparsity": round(sum(int(np.count_nonzero(w == 0)) for w in weights) / n_w, 4),
    }


def inter_chip_spikes(graph: DeployGraph, plan: list, layer_spikes: list[np.ndarray]) -> list[float]:
    """Spike messages that cross from one chip to another, per inference, per sending layer.

    Rule: for each spike a neuron emits, one message to every OTHER chip that holds cores of
    a layer it feeds: the next layer, and for a recurrent layer also its own layer (one
    message per destination chip, even when that chip holds cores of both). The chip of
    each neuron and of each layer's cores is the map pass's placement (passes/map.py:
    neuron j of a layer on its core j // neurons_per_core). Not counted: input spikes
    arriving from the host, and output spikes leaving the last layer (they go to the host,
    not to a chip of the network). On one chip every count is 0.

    graph: the deployed network; plan: map_layers(graph, target), placed; layer_spikes[l]:
    layer l's spikes (N, T, n_l) (or (N, T, C, H, W) for conv), bool or 0/1 ints, the same
    arrays count() takes. Returns one float per layer: messages summed over the N samples
    and T steps, divided by N (so per inference, averaged over samples); 0.0 for N = 0."""
    out = []
    for i, (layer, m, s) in enumerate(zip(graph.layers, plan, layer_spikes)):
        dest = set(plan[i + 1].chip_ids) if i + 1 < len(plan) else set()
        if layer.recurrent is not None:
            dest |= set(m.chip_ids)
        home = m.neuron_chips(layer.n_out)                                   # (n,) chip of each neuron
        others = np.array([len(dest - {c}) for c in range(int(home.max()) + 1)], dtype=np.int64)[home]
        s = np.asarray(s).reshape(s.shape[0], s.shape[1], layer.n_out)
        per_neuron = np.count_nonzero(s, axis=(0, 1)).astype(np.int64)      # (n,) spikes of each neuron
        out.append(float(per_neuron @ others) / s.shape[0] if s.shape[0] else 0.0)
    return out


def _step_time(c: dict, m, dest: int, samples: int, t: dict, kind: str = "dense") -> np.ndarray:
    """Per step, seconds the busiest core of one layer works (mean over samples). Dense:
    every input spike reaches all neurons of a full core; conv: the layer's synaptic
    operations (kernel taps whose window holds a spike) shared evenly over its cores."""
    ps = {k: np.asarray(v, dtype=np.float64) / samples for k, v in c["per_step"].items()}
    npc = m.neurons_per_core
    frac_active = ps["updates_active"] / c["neurons"]
    ops = ps["input_spikes"] * npc if kind == "dense" else ps["synaptic_ops"] / m.cores
    return (ops * t.get("synaptic_op", 0.0)
            + npc * (frac_active * t.get("neuron_update_active", 0.0)
                     + (1 - frac_active) * t.get("neuron_update_inactive", 0.0))
            + ps["spikes"] / m.cores * dest * t.get("spike_in_tile", 0.0))


def inter_chip_statement(report: dict) -> str:
    """One sentence: the chips, the spikes crossing them per inference, and what crossing
    costs in the report's energy (priced at the target's figure, or not counted)."""
    per_chip = ", ".join(str(k) for k in report["cores_per_chip"])
    limit = ("no system limit" if report["chips_per_system"] is None
             else f"system limit {report['chips_per_system']} chip{'s' * (report['chips_per_system'] != 1)}: "
                  f"{report['system']}")
    x = report["inter_chip_spikes_per_inference"]
    spikes = ("not computed (no spike arrays given)" if x is None else f"{x:.1f}")
    in_tile = any("spike_in_tile" in l["energy_j"] for l in report["layers"])
    cost = ("energy of crossing chips not counted (no published per-message figure for "
            f"{report['target']}" + ("; each is priced as a spike message within a tile only)" if in_tile else ")")
            if report["inter_chip_message_j"] is None else
            f"each priced at {report['inter_chip_message_j'] * 1e12:g} pJ per message")
    return (f"Chips: {report['chips']} ({report['cores']} cores; cores used per chip: {per_chip}; {limit}); "
            f"inter-chip spikes per inference: {spikes}; {cost}")


def estimate(graph: DeployGraph, counters: list[dict], samples: int, target,
             layer_spikes: list[np.ndarray] | None = None) -> dict:
    """Energy per inference (J) per layer and in total on `target`, plus the ANN baseline.

    counters: count() of the run over `samples` samples. layer_spikes: the same run's
    per-layer spike arrays (N, T, n_l), used for the spikes that cross chips
    (inter_chip_spikes); without them those counts are None on a network of several
    chips (0 on one chip, where none cross). The report holds the chips ("chips",
    "cores_per_chip", per layer "chips" and "chip_cores" [[chip, cores], ...]) and
    "inter_chip_spikes_per_inference"; static power is charged per chip used.
    Raises TargetError (a DeployError) when the network does not fit the target."""
    plan = map_layers(graph, target)
    per_chip = cores_per_chip(plan)
    if layer_spikes is not None:
        crossing = inter_chip_spikes(graph, plan, layer_spikes)
    else:
        crossing = [0.0 if len(per_chip) == 1 else None for _ in plan]
    e = dict(target.energy_j)
    if target.inter_chip_message_j is not None and None not in crossing:   # priced where published
        e["inter_chip_message"] = target.inter_chip_message_j
    layers, step_times = [], []
    for i, (layer, c, m) in enumerate(zip(graph.layers, counters, plan)):
        dest = plan[i + 1].cores if i + 1 < len(plan) else 1
        counts = {**c, "spike_messages": c["spikes"] * dest}
        parts = {op: counts[key] * e[op] / samples for op, key in OPS.items() if op in e}
        if "inter_chip_message" in e:
            parts["inter_chip_message"] = crossing[i] * e["inter_chip_message"]    # already per inference
        layers.append({**{k: v for k, v in counts.items() if k != "per_step"},
                       "cores": m.cores, "neurons_per_core": m.neurons_per_core,
                       "limited_by": m.limited_by, "chips": m.chip_ids,
                       "chip_cores": [list(p) for p in m.chips], "inter_chip_spikes": crossing[i],
                       "energy_j": parts, "total_j": sum(parts.values()),
                       "train_rate": layer.train_rate, "regulated": layer.regulated, "per_step": c["per_step"]})
        if target.time_s:
            step_times.append(_step_time(c, m, dest, samples, target.time_s, layer.kind))
    step_s = (float(np.max(step_times, axis=0).mean()) if step_times else target.step_time_s)
    total = sum(l["total_j"] for l in layers)
    static = (target.static_power_w * len(per_chip) * step_s * graph.steps
              if target.static_power_w is not None and step_s is not None else None)
    ann = BASELINE.ann(sum(macs(l) for l in graph.layers))
    latency = step_s * graph.steps if step_s is not None else None
    whole = total + (static or 0.0)
    return {
        "target": target.name, "description": target.description, "energy_note": target.energy_note,
        "samples": samples, "steps": graph.steps, "cores": sum(m.cores for m in plan),
        "chips": len(per_chip), "cores_per_chip": per_chip, "chips_per_system": target.chips_per_system,
        "system": target.system,
        "inter_chip_spikes_per_inference": None if None in crossing else sum(crossing),
        "inter_chip_message_j": target.inter_chip_message_j,
        "layers": layers, "dynamic_j_per_inference": total,
        # dynamic + static where the model has a static figure (else the model's own all-in figure)
        "total_j_per_inference": whole, "total_includes_static": static is not None,
        "latency_s_per_inference": latency,
        "energy_delay_product_js": whole * latency if latency is not None else None,
        "synaptic_ops_per_inference": sum(c["synaptic_ops"] for c in counters) / samples,
        "time_per_step_s": step_s, "time_per_step_estimated": bool(step_times),
        "static_power_w": target.static_power_w, "static_j_per_inference": static,
        "ann_baseline": ann, "snn_over_ann_int8": total / ann["int8_j"],   # arithmetic vs arithmetic
        "neurobench": neurobench(graph, counters, samples, target),
    }


def compare_targets(graph: DeployGraph, counters: list[dict], samples: int,
                    layer_spikes: list[np.ndarray] | None = None) -> list[dict]:
    """Dynamic (and static, where known) energy per inference on every energy model, with
    the chips each needs and the spikes crossing them (estimate's arguments)."""
    rows = []
    for name, t in hw_targets.ENERGY_MODELS.items():
        try:
            r = estimate(graph, counters, samples, t, layer_spikes)
            rows.append({"target": name, "fits": True, "dynamic_j": r["dynamic_j_per_inference"],
                         "static_j": r["static_j_per_inference"], "total_j": r["total_j_per_inference"],
                         "chips": r["chips"], "inter_chip_spikes": r["inter_chip_spikes_per_inference"],
                         "note": t.energy_note})
        except DeployError as err:
            rows.append({"target": name, "fits": False, "error": str(err), "note": t.energy_note})
    return rows


def _chip(report: dict) -> str:
    """The chip's name, marked where its energy model is an estimate (Loihi 2)."""
    return report["target"] + (" (estimate)" if "ESTIMATE" in report["energy_note"] else "")


def _chips(chip_cores) -> str:
    """'0' for a layer on chip 0; '0 (28), 1 (100)' for one spanning chips (cores on each)."""
    if not chip_cores:
        return "-"
    return str(chip_cores[0][0]) if len(chip_cores) == 1 else ", ".join(f"{c} ({k})" for c, k in chip_cores)


def _on_chips(report: dict) -> str:
    """' on 2 chips' where the report says how many chips (older reports do not)."""
    n = report.get("chips")
    return "" if n is None else f" on {n} chip{'s' if n != 1 else ''}"


def _nj(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e9:.3f}"


def table(report: dict) -> str:
    head = (f"{'layer':<8} {'neurons':>7} {'cores':>5} {'rate':>6} {'train':>6} {'syn ops':>10} "
            f"{'spikes':>8} {'nJ/inf':>9}")
    lines = [f"energy on {_chip(report)} per inference ({report['samples']} samples, "
             f"{report['steps']} steps each)", head, "-" * len(head)]
    for l in report["layers"]:
        tr = f"{l['train_rate']:.3f}" if l["train_rate"] is not None else "  -"
        lines.append(f"{l['layer']:<8} {l['neurons']:>7} {l['cores']:>5} {l['rate']:>6.3f} {tr:>6} "
                     f"{l['synaptic_ops'] / report['samples']:>10.0f} "
                     f"{l['spikes'] / report['samples']:>8.1f} {l['total_j'] * 1e9:>9.3f}")
    b, nb = report["ann_baseline"], report["neurobench"]
    static = ("no separate static figure" if report["static_power_w"] is None
              else f"static {report['static_power_w'] * 1e3:.0f} mW per chip{_on_chips(report)}, about "
                   f"{_nj(report['static_j_per_inference'])} nJ per inference at an estimated "
                   f"{report['time_per_step_s'] * 1e6:.2f} us per step")
    lines += ["-" * len(head),
              f"dynamic {_nj(report['dynamic_j_per_inference'])} nJ per inference from operations ({static}); "
              f"total {_nj(report['total_j_per_inference'])} nJ"
              + (f", latency {report['latency_s_per_inference'] * 1e6:.1f} us"
                 if report["latency_s_per_inference"] is not None else "")
              + (f", run accuracy {100 * report['accuracy']:.2f} %" if report.get("accuracy") is not None else ""),
              f"  model: {report['energy_note']}",
              *([inter_chip_statement(report)] if "chips" in report else []),
              f"ANN baseline, same layers, {b['macs']} MACs: int8 {_nj(b['int8_j'])} nJ "
              f"({_nj(b['int8_sram_j'])} with weight reads), fp32 {_nj(b['fp32_j'])} nJ "
              f"({_nj(b['fp32_sram_j'])}) ({b['source']}); SNN / ANN int8 = "
              f"{report['snn_over_ann_int8']:.1f}",
              f"NeuroBench: ActivationSparsity {nb['ActivationSparsity']:.4f}, SynapticOperations "
              f"Effective_ACs {nb['SynapticOperations']['Effective_ACs']:.0f} (Dense "
              f"{nb['SynapticOperations']['Dense']}), Footprint {nb['Footprint']} B, "
              f"ConnectionSparsity {nb['ConnectionSparsity']}"]
    if report.get("targets"):
        lines.append("all energy models (nJ per inference: operations / static / total; chips):")
        for t in report["targets"]:
            name = t["target"] + (" (est.)" if "ESTIMATE" in t["note"] else "")
            lines.append(f"  {name:<15} " + (f"{_nj(t['dynamic_j']):>10} / {_nj(t['static_j'])} / "
                                                  f"{_nj(t['total_j'])}; {t.get('chips', '-')}"
                                                  if t["fits"] else f"does not fit: {t['error']}"))
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """energy.md: the readable summary beside energy.json and energy.png."""
    s, b, nb = report["samples"], report["ann_baseline"], report["neurobench"]
    out = [f"# Energy on {_chip(report)}",
           "",
           f"{report['description']}. Counted on the spikes the `{report.get('backend', '?')}` "
           f"backend produced: {s} samples x {report['steps']} steps. Model: {report['energy_note']}.",
           "",
           "| layer | neurons | cores | chips | rate | training rate | synaptic ops | spikes | "
           "inter-chip spikes | nJ / inference |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for l in report["layers"]:
        tr = "-" if l["train_rate"] is None else f"{l['train_rate']:.3f}"
        x = l.get("inter_chip_spikes")
        out.append(f"| {l['layer']} | {l['neurons']} | {l['cores']} | {_chips(l.get('chip_cores'))} | "
                   f"{l['rate']:.3f} | {tr} | {l['synaptic_ops'] / s:.0f} | {l['spikes'] / s:.1f} | "
                   f"{'-' if x is None else f'{x:.1f}'} | {l['total_j'] * 1e9:.3f} |")
    out += ["",
            f"Per inference: **total {_nj(report['total_j_per_inference'])} nJ**"
            + (f" in {report['latency_s_per_inference'] * 1e6:.1f} us (energy-delay product "
               f"{report['energy_delay_product_js']:.3g} J s)" if report["latency_s_per_inference"] is not None else "")
            + (f", run accuracy {100 * report['accuracy']:.2f} %" if report.get("accuracy") is not None else "")
            + f"; dynamic {_nj(report['dynamic_j_per_inference'])} nJ; "
            + ("no separate static power figure (see the model note)."
               if report["static_j_per_inference"] is None else
               f"static {_nj(report['static_j_per_inference'])} nJ ({report['static_power_w']} W per chip"
               f"{_on_chips(report)} x {report['time_per_step_s'] * 1e6:.3f} us per step"
               + (", estimated: busiest core, no synchronisation" if report["time_per_step_estimated"] else "")
               + ")."),
            *(["", inter_chip_statement(report) + "."] if "chips" in report else []),
            "",
            f"ANN baseline ({b['source']}), {b['macs']} MACs: int8 {_nj(b['int8_j'])} nJ, "
            f"{_nj(b['int8_sram_j'])} nJ with weight reads from SRAM; fp32 {_nj(b['fp32_j'])} nJ, "
            f"{_nj(b['fp32_sram_j'])} nJ. SNN / ANN int8 (arithmetic only): "
            f"{report['snn_over_ann_int8']:.2f}.",
            "",
            "NeuroBench metrics (the `neurobench` package's names): ActivationSparsity "
            f"{nb['ActivationSparsity']:.4f}; SynapticOperations per inference: Effective_ACs "
            f"{nb['SynapticOperations']['Effective_ACs']:.1f}, Dense {nb['SynapticOperations']['Dense']}; "
            f"Footprint {nb['Footprint']} bytes ({nb['Footprint_float32']} as float32); "
            f"ConnectionSparsity {nb['ConnectionSparsity']}."]
    if report.get("targets"):
        out += ["", "| energy model | chips | dynamic nJ | static nJ | total nJ | note |",
                "|---|---|---|---|---|---|"]
        for t in report["targets"]:
            if t["fits"]:
                out.append(f"| {t['target']} | {t.get('chips', '-')} | {_nj(t['dynamic_j'])} | "
                           f"{_nj(t['static_j'])} | {_nj(t['total_j'])} | {t['note']} |")
            else:
                out.append(f"| {t['target']} | does not fit | | | | {t['error']} |")
    if report.get("sparsity_check"):
        out += ["", "| layer | sparsity check |", "|---|---|"]
        for c in report["sparsity_check"]:
            out.append(f"| {c['layer']} | {c['status']}{': ' + '; '.join(c['reasons']) if c['reasons'] else ''} |")
    out += ["", "![rates, energy by operation, SNN vs ANN](energy.png)", ""]
    return "\n".join(out)


BAND = (0.05, 0.25)        # AHSAR's target band (METHODS.md section 1)
RATE_TOLERANCE = 0.25      # on-target rate may differ from training's by 25 % (relative)


def check_sparsity(report: dict, graph: DeployGraph, band: tuple[float, float] = BAND,
                   tolerance: float = RATE_TOLERANCE) -> list[dict]:
    """Per layer: does the on-target rate match training's, and sit in the band?

    Regulated (AHSAR) layers must be inside the band; every layer with a training rate
    must be within `tolerance` (relative) of it. "checks" lists what was checked;
    "status" is "pass", "FAIL", or "not checked" for a layer with neither (unregulated and
    no training rate, e.g. an imported graph without ahsar metadata). "ok" is True unless
    a check failed, so a layer that was not checked is not a failure, but not a pass either.
    """
    out = []
    for layer, row in zip(graph.layers, report["layers"]):
        rate, train = row["rate"], layer.train_rate
        reasons, checks = [], []
        if train is not None:
            checks.append("training rate")
            if abs(rate - train) > tolerance * train:
                reasons.append(f"rate {rate:.3f} vs {train:.3f} in training (tolerance {tolerance:.0%})")
        if layer.regulated:
            checks.append("AHSAR band")
            if not band[0] <= rate <= band[1]:
                reasons.append(f"rate {rate:.3f} outside the AHSAR band [{band[0]}, {band[1]}]")
        status = "FAIL" if reasons else "pass" if checks else "not checked"
        out.append({"layer": layer.name, "rate": rate, "train_rate": train,
                    "regulated": layer.regulated, "ok": not reasons, "status": status, "checks": checks,
                    "reasons": reasons, "band": list(band), "tolerance": tolerance})
    return out


def plot(report: dict, path) -> None:
    """PNG at `path`, three panels: per-layer firing rate against the band and training; energy by
    operation type per layer; energy per inference on each chip against the ANN baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [l["layer"] for l in layers]
    idx = np.arange(len(names))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    regulated = [i for i, l in enumerate(layers) if l.get("regulated")]
    for n, i in enumerate(regulated):   # the band applies to regulated layers only, not the readout
        a.fill_between([i - 0.45, i + 0.45], *BAND, color="tab:green", alpha=0.15,
                       label="AHSAR band" if n == 0 else None)
    a.bar(idx - 0.2, [l["rate"] for l in layers], 0.4, label=f"on {report['target']}")
    a.bar(idx + 0.2, [l["train_rate"] or 0 for l in layers], 0.4, label="float model (test split)")
    a.set_xticks(idx, names)
    a.set_ylabel("spikes per neuron per step")
    a.set_title("firing rate per layer")
    a.legend()
    bottom = np.zeros(len(layers))
    for k in layers[0]["energy_j"]:
        vals = np.array([l["energy_j"][k] * 1e9 for l in layers])
        b.bar(idx, vals, 0.6, bottom=bottom, label=k)
        bottom += vals
    b.set_xticks(idx, names)
    b.set_ylabel("nJ per inference")
    b.set_title(f"energy on {report['target']} by operation: "
                f"{report['dynamic_j_per_inference'] * 1e9:.0f} nJ")
    b.legend()
    base = report["ann_baseline"]
    bars = [(t["target"] + (" (est.)" if "ESTIMATE" in t["note"] else ""), t["dynamic_j"])
            for t in report.get("targets") or [] if t["fits"]]
    bars = bars or [(report["target"], report["dynamic_j_per_inference"])]
    bars += [("ANN int8", base["int8_j"]), ("ANN int8+SRAM", base["int8_sram_j"]),
             ("ANN fp32", base["fp32_j"])]
    colors = ["tab:blue"] * (len(bars) - 3) + ["tab:gray"] * 3
    c.bar(range(len(bars)), [v * 1e9 for _, v in bars], color=colors)
    c.set_xticks(range(len(bars)), [n for n, _ in bars], rotation=20)
    c.set_yscale("log")
    c.set_ylabel("nJ per inference (operations, no static)")
    c.set_title("SNN on each chip vs ANN baseline (45 nm)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100, format="png")   # api.energy writes it with energy.json, .md (atomic_paths)
    finally:
        plt.close(fig)
