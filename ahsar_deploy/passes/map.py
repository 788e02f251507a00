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
neuron's synapses above a core's memory, too little fan-out for one neuron: TargetError
naming the layer, rule, value and limit.

Chips. A network larger than one chip is placed on several, as multi-chip Loihi systems
run it (the target's `cores` per chip, at most `chips_per_system` chips; None: no limit):
layers are placed in order (input side first), each layer's cores in order, filling
chip 0's cores, then chip 1's, and so on; a layer may span chips, and a chip may hold the
end of one layer and the start of the next. Within a layer, neuron j sits on core
j // neurons_per_core. This is the rule of nengo-loihi's Greedy allocator, its default
since 1.0.0 (nengo_loihi/hardware/allocators.py; changelog: "uses all cores on one chip
before proceeding to the next chip"); like it, it does not try to reduce the spikes that
cross chips (nengo-loihi's GreedyInterchip and PartitionInterchip allocators do). More chips than the system has:
TargetError with the chips, cores and the layer that needs the most cores.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..errors import TargetError, UnsupportedLayerError
from ..ir import DeployGraph


@dataclass(frozen=True)
class LayerMap:
    """Where one layer sits: its cores, what limited them, and the chips they are on.

    chips: (chip index, cores of this layer on that chip) pairs in placement order, e.g.
    ((0, 28), (1, 100)) for a layer whose first 28 cores fill chip 0 and whose other 100
    sit on chip 1 (module docstring: the placement rule). Empty before placement."""
    name: str
    cores: int
    neurons_per_core: int      # on the fullest core
    limited_by: str            # the limit that set neurons_per_core, or "fits one core"
    synapse_bytes_per_core: int
    chips: tuple[tuple[int, int], ...] = ()

    @property
    def chip_ids(self) -> list[int]:
        """The chips holding this layer's cores, ascending (ints)."""
        return [c for c, _ in self.chips]

    def neuron_chips(self, n_out: int) -> np.ndarray:
        """Chip index of each of the layer's n_out neurons, (n_out,) int64: neuron j sits
        on the layer's core j // neurons_per_core, cores numbered in placement order."""
        core_chip = np.repeat([c for c, _ in self.chips], [k for _, k in self.chips])
        return core_chip[np.arange(n_out) // self.neurons_per_core].astype(np.int64)


def _fail(target, layer: str, rule: str, detail: str) -> None:
    raise TargetError(f"map: {layer} does not fit {target.name}: {rule} {detail}")


def map_layers(graph: DeployGraph, target) -> list[LayerMap]:
    """Cores per layer under the target's per-core limits, placed on chips (module
    docstring). target: a chip with cores, neurons_per_core, fan_in_axons_per_core,
    fan_out_per_core, synapse_bytes_per_core, weight_bits, chips_per_system and system
    (hw_targets/). Returns one LayerMap per layer, in network order. Raises
    UnsupportedLayerError for a layer kind other than dense or conv, TargetError for a
    layer that breaks a per-core limit or a network needing more chips than a system has."""
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
    chips = math.ceil(total / target.cores)
    limit = target.chips_per_system
    if limit is not None and chips > limit:
        worst = max(out, key=lambda m: m.cores)
        why = f"{worst.name} alone needs {worst.cores} cores, limited by {worst.limited_by}"
        if limit == 1:
            raise TargetError(f"map: network needs {total} cores, {target.name} has {target.cores} "
                              f"on its one chip ({why}): make the largest layers smaller")
        raise TargetError(f"map: network needs {chips} chips ({total} cores, {target.cores} per chip), "
                          f"{target.name} systems have at most {limit} ({target.system}) ({why}): "
                          "make the largest layers smaller")
    return [dataclasses.replace(m, chips=c) for m, c in zip(out, place([m.cores for m in out], target.cores))]


def place(layer_cores: list[int], cores_per_chip: int) -> list[tuple[tuple[int, int], ...]]:
    """The placement rule (module docstring): layers in order, cores filled chip by chip.

    layer_cores: cores of each layer, in network order; cores_per_chip: the chip's cores.
    Returns, per layer, its (chip index, cores on that chip) pairs, e.g. place([100, 128],
    128) == [((0, 100),), ((0, 28), (1, 100))]."""
    out, used = [], 0                     # used: cores placed so far over all chips
    for n in layer_cores:
        spans = []
        while n > 0:
            chip, free = divmod(used, cores_per_chip)
            k = min(n, cores_per_chip - free)
            spans.append((chip, k))
            used, n = used + k, n - k
        out.append(tuple(spans))
    return out


def cores_per_chip(plan: list[LayerMap]) -> list[int]:
    """Cores used on chip 0, 1, ... (ints) by a placed plan (map_layers' result); all chips
    but the last are full under the placement rule. len() is the number of chips."""
    used: dict[int, int] = {}
    for m in plan:
        for chip, k in m.chips:
            used[chip] = used.get(chip, 0) + k
    return [used[c] for c in sorted(used)]


def map_cores(graph: DeployGraph, target) -> DeployGraph:
    """The pass: record in graph.notes the cores per layer and in total, the chips, the
    cores used on each chip and the chips each layer's cores sit on (lists of ints).
    Raises TargetError as map_layers does."""
    plan = map_layers(graph, target)
    per_chip = cores_per_chip(plan)
    return graph.with_(notes={**graph.notes, "cores": sum(m.cores for m in plan),
                              "cores_per_layer": {m.name: m.cores for m in plan},
                              "chips": len(per_chip), "cores_per_chip": per_chip,
                              "chips_per_layer": {m.name: m.chip_ids for m in plan}})
