"""Cores per layer under each target's limits, their placement on chips, the spikes that
cross chips, and the errors for a network that does not fit."""
import dataclasses

import numpy as np
import pytest

from ahsar_deploy.energy_report import count, estimate, inter_chip_spikes, markdown, table
from ahsar_deploy.errors import TargetError
from ahsar_deploy.ir import DeployGraph, Layer
from ahsar_deploy.passes.map import cores_per_chip, map_cores, map_layers, place
from hw_targets import LOIHI, LOIHI2, SPINNAKER, TRUENORTH


def _graph(*shapes, steps=1):
    # weights and thresholds as read-only broadcast views: mapping needs only the shapes
    layers = [Layer(name=f"layer{i}", weight=np.broadcast_to(np.int8(0), (n_out, n_in)),
                    threshold=np.broadcast_to(1.0, (n_out,)), i_decay=4096, v_decay=0, vth=1)
              for i, (n_in, n_out) in enumerate(shapes)]
    return DeployGraph(layers=tuple(layers), n_inputs=shapes[0][0], steps=steps, dataset="x",
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
    assert map_cores(g, LOIHI).notes == {"cores": 12, "cores_per_layer": {"layer0": 4, "layer1": 8},
                                         "chips": 1, "cores_per_chip": [12],
                                         "chips_per_layer": {"layer0": [0], "layer1": [0]}}


def test_fan_in_error_names_layer_and_limit():
    with pytest.raises(TargetError, match=r"map: layer1 does not fit loihi: fan-in 5000 inputs, limit 4096"):
        map_layers(_graph((10, 5000), (5000, 10)), LOIHI)
    assert _cores(_graph((10, 5000), (5000, 10)), LOIHI2)[1] == (1, 10, "fits one core")   # not published
    with pytest.raises(TargetError, match=r"layer0 does not fit truenorth: fan-in 784 inputs, limit 256"):
        map_layers(_graph((784, 100)), TRUENORTH)


def test_placement_rule():
    """Layers in order, cores filled chip by chip; a layer may span chips."""
    assert place([100, 128, 1], 128) == [((0, 100),), ((0, 28), (1, 100)), ((1, 1),)]
    assert place([300], 128) == [((0, 128), (1, 128), (2, 44))]
    assert place([3, 4], 128) == [((0, 3),), ((0, 4),)]


# Two chips on Loihi (128 cores per chip, Davies 2018): 10 -> 4000 -> 4000 -> 10.
# layer2: 4000 inputs x 8 bits -> 128 KB holds 32 neurons per core -> 1 core (10 neurons).
# layer1: the same 32 per core -> 4000 / 32 = 125 cores.
# layer0: fan-out 4096 edges / 125 destination cores = 32 neurons per core -> 125 cores.
# 251 cores: chip 0 holds layer0's 125 cores (0..124) and layer1's first 3 (125..127, its
# neurons 0..95); chip 1 holds layer1's other 122 cores (neurons 96..3999) and layer2's one.
TWO_CHIPS = ((10, 4000), (4000, 4000), (4000, 10))


def _two_chip_spikes():
    """2 samples x 3 steps of hand-set spikes; the comments give the messages that cross chips."""
    s0 = np.zeros((2, 3, 4000), bool)   # layer0, all on chip 0, feeds layer1 on chips 0 and 1:
    s0[0, 0, 0] = s0[0, 1, 0] = True    #   1 message per spike (to chip 1): 2
    s0[0, 2, 3999] = True               #   1
    s0[1, 0, 5] = True                  #   1                  -> 4 messages, 4 / 2 = 2.0 per inference
    s1 = np.zeros((2, 3, 4000), bool)   # layer1 feeds layer2 on chip 1:
    s1[0, 0, 95] = s1[0, 2, 95] = True  #   neuron 95 on chip 0: 1 message per spike: 2
    s1[1, :, 96] = True                 #   neuron 96 on chip 1: 0 (same chip) -> 2 / 2 = 1.0
    s2 = np.ones((2, 3, 10), bool)      # layer2: output spikes leave for the host, not counted
    return [s0, s1, s2]


def test_network_larger_than_a_chip_maps_onto_two():
    g = _graph(*TWO_CHIPS, steps=3)
    plan = map_layers(g, LOIHI)
    assert [(m.cores, m.neurons_per_core, m.limited_by) for m in plan] == [
        (125, 32, "fan-out"), (125, 32, "synapse memory"), (1, 10, "fits one core")]
    assert [m.chips for m in plan] == [((0, 125),), ((0, 3), (1, 122)), ((1, 1),)]
    assert cores_per_chip(plan) == [128, 123]
    notes = map_cores(g, LOIHI).notes
    assert (notes["chips"], notes["cores_per_chip"]) == (2, [128, 123])
    assert notes["chips_per_layer"] == {"layer0": [0], "layer1": [0, 1], "layer2": [1]}
    home = plan[1].neuron_chips(4000)
    assert home[95] == 0 and home[96] == 1 and (home[:96] == 0).all() and (home[96:] == 1).all()
    assert inter_chip_spikes(g, plan, _two_chip_spikes()) == [2.0, 1.0, 0.0]


def test_energy_report_states_chips_and_inter_chip_spikes():
    g = _graph(*TWO_CHIPS, steps=3)
    spikes = _two_chip_spikes()
    x = np.zeros((2, 3, 10), bool)
    c = count(g, x, spikes)
    r = estimate(g, c, 2, LOIHI, spikes)
    assert (r["chips"], r["cores_per_chip"], r["chips_per_system"]) == (2, [128, 123], 768)
    assert r["inter_chip_spikes_per_inference"] == 3.0
    assert [l["inter_chip_spikes"] for l in r["layers"]] == [2.0, 1.0, 0.0]
    assert [l["chip_cores"] for l in r["layers"]] == [[[0, 125]], [[0, 3], [1, 122]], [[1, 1]]]
    assert r["inter_chip_message_j"] is None                  # no published figure: not priced
    assert all("inter_chip_message" not in l["energy_j"] for l in r["layers"])
    # static power is per chip: two chips draw twice one chip's
    assert r["static_j_per_inference"] == pytest.approx(2 * 0.104 * r["time_per_step_s"] * 3, rel=1e-12)
    for text in (table(r), markdown(r)):
        assert ("Chips: 2 (251 cores; cores used per chip: 128, 123; system limit 768 chips: Pohoiki "
                "Springs, 768 chips); inter-chip spikes per inference: 3.0; energy of crossing chips not "
                "counted (no published per-message figure for loihi; each is priced as a spike message "
                "within a tile only)") in text
    assert "| layer1 | 4000 | 125 | 0 (3), 1 (122) |" in markdown(r)
    # without the spike arrays the crossing count is unknown on two chips, not 0
    assert estimate(g, c, 2, LOIHI)["inter_chip_spikes_per_inference"] is None
    # a chip whose crossing is priced adds count x price (a made-up 1 pJ, to test the sum)
    priced = estimate(g, c, 2, dataclasses.replace(LOIHI, inter_chip_message_j=1e-12), spikes)
    assert priced["dynamic_j_per_inference"] == pytest.approx(r["dynamic_j_per_inference"] + 3.0e-12, rel=1e-12)


def test_recurrent_layer_sends_to_the_chips_of_its_own_layer():
    """A tiny made-up chip (2 cores, 2 neurons per core) so the numbers stay small:
    layer0 (2 neurons) on core 0; recurrent layer1 (3 neurons) on cores 1 and 2, its
    neurons 0, 1 on chip 0 and neuron 2 on chip 1; layer2 (2 neurons) on core 3, chip 1."""
    tiny = dataclasses.replace(LOIHI, name="tiny", cores=2, neurons_per_core=2, chips_per_system=None)
    g = _graph((2, 2), (2, 3), (3, 2), steps=2)
    rec = g.layers[1].with_(recurrent=np.zeros((3, 3), np.int8))
    g = g.with_(layers=(g.layers[0], rec, g.layers[2]))
    plan = map_layers(g, tiny)
    assert [m.chips for m in plan] == [((0, 1),), ((0, 1), (1, 1)), ((1, 1),)]
    s0 = np.array([[[1, 0], [1, 1]]], bool)   # 3 spikes on chip 0 -> layer1 also on chip 1: 3
    s1 = np.array([[[1, 0, 1], [0, 1, 1]]], bool)
    # layer1 feeds layer2 (chip 1) and itself (chips 0, 1): neurons 0, 1 (chip 0) send 1
    # message per spike (chip 1): 2; neuron 2 (chip 1) sends 1 (chip 0, its own layer): 2
    s2 = np.ones((1, 2, 2), bool)             # output: not counted
    assert inter_chip_spikes(g, plan, [s0, s1, s2]) == [3.0, 4.0, 0.0]


def test_network_within_one_chip_reports_one_chip_and_no_inter_chip_spikes():
    g = _graph((10, 3000), (3000, 10), steps=2)
    plan = map_layers(g, LOIHI)
    assert [m.chips for m in plan] == [((0, 3),), ((0, 1),)] and cores_per_chip(plan) == [4]
    spikes = [np.ones((3, 2, 3000), bool), np.ones((3, 2, 10), bool)]   # every neuron, every step
    assert inter_chip_spikes(g, plan, spikes) == [0.0, 0.0]
    r = estimate(g, count(g, np.ones((3, 2, 10), bool), spikes), 3, LOIHI)   # no arrays needed on one chip
    assert (r["chips"], r["cores_per_chip"], r["inter_chip_spikes_per_inference"]) == (1, [4], 0.0)


def test_more_chips_than_the_system_has():
    # 4000 inputs: 32 neurons per core; 3,200,000 neurons -> 100,000 cores -> 782 chips of 128
    with pytest.raises(TargetError, match=r"^map: network needs 782 chips \(100000 cores, 128 per chip\), "
                       r"loihi systems have at most 768 \(Pohoiki Springs, 768 chips\) \(layer0 alone "
                       r"needs 100000 cores, limited by synapse memory\): make the largest layers smaller$"):
        map_layers(_graph((4000, 3_200_000)), LOIHI)
    # a one-chip system keeps the cores wording
    with pytest.raises(TargetError, match=r"^map: network needs 196 cores, loihi-1chip has 128 on its one "
                       r"chip \(layer0 alone needs 196 cores, limited by neurons\): make the largest "
                       r"layers smaller$"):
        map_layers(_graph((1, 200_000)), dataclasses.replace(LOIHI, name="loihi-1chip", chips_per_system=1))
    assert [m.chips for m in map_layers(_graph((1, 200_000)), LOIHI)] == [((0, 128), (1, 68))]   # 196 cores
    # SpiNNaker: 16 cores per chip, one SpiNN-5 board of 48 chips (hw_targets/spinnaker.py)
    with pytest.raises(TargetError, match=r"needs 49 chips \(769 cores, 16 per chip\), spinnaker systems "
                       r"have at most 48"):
        map_layers(_graph((1, 769 * 256)), SPINNAKER)
