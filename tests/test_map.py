"""Cores per layer under each target's limits, and the error for a network that does not fit."""
import numpy as np
import pytest

from ahsar_deploy.errors import TargetError
from ahsar_deploy.ir import DeployGraph, Layer
from ahsar_deploy.passes.map import map_cores, map_layers
from hw_targets import LOIHI, LOIHI2, TRUENORTH


def _graph(*shapes):
    layers = [Layer(name=f"layer{i}", weight=np.zeros((n_out, n_in), np.int8), threshold=np.ones(n_out),
                    i_decay=4096, v_decay=0, vth=1) for i, (n_in, n_out) in enumerate(shapes)]
    return DeployGraph(layers=tuple(layers), n_inputs=shapes[0][0], steps=1, dataset="x",
                       encoding="x", method="baseline", source_sha256="")


def _cores(graph, target):
    return [(m.cores, m.neurons_per_core, m.limited_by) for m in map_layers(graph, target)]


def test_neuron_limit():
    assert _cores(_graph((10, 3000)), LOIHI) == [(3, 1024, "neurons")]          # ceil(3000 / 1024)
    assert _cores(_graph((10, 3000)), LOIHI2) == [(1, 3000, "fits one core")]         # 8192 per core
    assert _cores(_graph((64, 300)), TRUENORTH) == [(2, 256, "neurons")]


def test_synapse_memory_limit():
    # 128 KB per core / (4000 inputs x 8 bits) = 32 neurons per core -> 1024 / 32 = 32 cores
    assert _cores(_graph((4000, 1024)), LOIHI) == [(32, 32, "synapse memory")]
    # Loihi 2: 192 KB per core -> 49 neurons per core -> 21 cores
    assert _cores(_graph((4000, 1024)), LOIHI2) == [(21, 49, "synapse memory")]


def test_fan_out_limit():
    # layer1: 128 KB / (2048 x 8 bits) = 64 neurons per core -> 8 cores; so each layer0
    # neuron sends 8 edges, and 4096 edges per core allow 512 layer0 neurons per core.
    g = _graph((10, 2048), (2048, 512))
    assert _cores(g, LOIHI) == [(4, 512, "fan-out"), (8, 64, "synapse memory")]
    assert map_cores(g, LOIHI).notes == {"cores": 12, "cores_per_layer": {"layer0": 4, "layer1": 8}}


def test_fan_in_error_names_layer_and_limit():
    with pytest.raises(TargetError, match=r"map: layer1 does not fit loihi: fan-in 5000 inputs, limit 4096"):
        map_layers(_graph((10, 5000), (5000, 10)), LOIHI)
    assert _cores(_graph((10, 5000), (5000, 10)), LOIHI2)[1] == (1, 10, "fits one core")   # not published
    with pytest.raises(TargetError, match=r"layer0 does not fit truenorth: fan-in 784 inputs, limit 256"):
        map_layers(_graph((784, 100)), TRUENORTH)


def test_too_many_cores():
    with pytest.raises(TargetError, match=r"needs 196 cores, loihi has 128 \(layer0 alone needs 196"):
        map_layers(_graph((1, 200_000)), LOIHI)
