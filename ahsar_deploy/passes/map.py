"""Map: the cores each layer needs under a target's limits (hw_targets/).

A dense layer's neurons are split over cores; every core holding part of a layer gets
all of the layer's inputs as axons and stores its own neurons' synapses. Neurons per
core for a layer = the smallest of
- neurons:       the target's neurons per core;
- synapse memory: synapse_bytes_per_core * 8 // (n_in * weight_bits), dense synapses of
                 the target's weight width (synapse-encoding overhead not modelled);
- fan-out:       fan_out_per_core // (cores of the next layer): every neuron sends one
                 edge to each core of the next layer, the last layer one to the output.
A conv layer is mapped like a dense one whose neurons each have C_in * kh * kw synapses
(stored per neuron: Loihi's shared-weight encodings are not modelled) and as many axons,
a lower bound: the union of the receptive fields of a core's neurons is not modelled.
A recurrent layer (Layer.recurrent) also takes its own n_out spikes as inputs: n_in + n_out
axons and synapses per neuron (its recurrent synapses are stored like its feed-forward
ones), and each neuron also sends one edge to every core of its own layer.
A limit of None is unpublished and not checked. Fan-in above a core's axons, one
neuron's synapses above a core's memory, too little fan-out for one neuron, or more
cores than the chip has: TargetError naming the layer, rule, value and limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import TargetError, UnsupportedLayerError
from ..ir import DeployGraph


@dataclass(frozen=True)
class LayerMap:
    name: str
    cores: int
    neurons_per_core: int      # on the fullest core
    limited_by: str            # the limit that set neurons_per_core, or "fits one core"
    synapse_bytes_per_core: int


def _fail(target, layer: str, rule: str, detail: str) -> None:
    raise TargetError(f"map: {layer} does not fit {target.name}: {rule} {detail}")


def map_layers(graph: DeployGraph, target) -> list[LayerMap]:
    out: list[LayerMap] = []
    dest_cores = 1                              # the last layer sends to the output
    for l in reversed(graph.layers):
        if l.kind not in ("dense", "conv"):
            raise UnsupportedLayerError(f"map: {l.name} is a {l.kind} layer; mapping supports dense and conv")
        n_in = l.fan_in if l.kind == "conv" else l.n_in      # synapses (and axons) per neuron
        if l.recurrent is not None:
            n_in += l.n_out                                   # its own spikes, one step later
        if target.fan_in_axons_per_core is not None and n_in > target.fan_in_axons_per_core:
            _fail(target, l.name, "fan-in", f"{n_in} inputs, limit {target.fan_in_axons_per_core} "
                  "axons per core (split the layer or reduce its inputs)")
        limits = {"neurons": target.neurons_per_core}
        if target.synapse_bytes_per_core is not None:
            bits = n_in * target.weight_bits
            limits["synapse memory"] = target.synapse_bytes_per_core * 8 // bits
            if limits["synapse memory"] < 1:
                _fail(target, l.name, "synapse memory", f"{math.ceil(bits / 8)} bytes for one neuron, "
                      f"limit {target.synapse_bytes_per_core} bytes per core")
        if target.fan_out_per_core is not None:
            own = 0                     # a recurrent layer's own cores: found by iterating
            for _ in range(l.n_out if l.recurrent is not None else 1):
                limits["fan-out"] = target.fan_out_per_core // (dest_cores + own)
                if limits["fan-out"] < 1:
                    _fail(target, l.name, "fan-out", f"{dest_cores + own} destination cores per neuron, "
                          f"limit {target.fan_out_per_core} edges per core")
                cores = math.ceil(l.n_out / min(*limits.values(), l.n_out))
                if l.recurrent is None or cores == own:
                    break
                own = cores
        limited_by = min(limits, key=limits.get)
        if limits[limited_by] >= l.n_out:
            limited_by = "fits one core"
        per_core = min(*limits.values(), l.n_out)
        cores = math.ceil(l.n_out / per_core)
        out.append(LayerMap(l.name, cores, per_core, limited_by,
                            math.ceil(per_core * n_in * target.weight_bits / 8)))
        dest_cores = cores
    out.reverse()
    total = sum(m.cores for m in out)
    if total > target.cores:
        worst = max(out, key=lambda m: m.cores)
        raise TargetError(f"map: network needs {total} cores, {target.name} has {target.cores} "
                          f"({worst.name} alone needs {worst.cores}, limited by {worst.limited_by})")
    return out


def map_cores(graph: DeployGraph, target) -> DeployGraph:
    """The pass: record cores per layer and in total in graph.notes."""
    plan = map_layers(graph, target)
    return graph.with_(notes={**graph.notes, "cores": sum(m.cores for m in plan),
                              "cores_per_layer": {m.name: m.cores for m in plan}})
