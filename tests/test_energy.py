"""Counters on a hand-built network whose counts are known exactly."""
import numpy as np

from ahsar_deploy.energy import count, estimate
from ahsar_deploy.ir import DeployGraph, Layer
from hw_targets import LOIHI


def test_counts_and_energy_by_hand():
    l0 = Layer(name="a", weight=np.zeros((3, 2)), threshold=np.ones(3), i_decay=1, v_decay=1, vth=1)
    l1 = Layer(name="b", weight=np.zeros((2, 3)), threshold=np.ones(2), i_decay=1, v_decay=1, vth=1)
    g = DeployGraph(layers=(l0, l1), n_inputs=2, steps=4, dataset="x", encoding="x",
                    method="baseline", source_sha256="")
    x = np.zeros((1, 4, 2), bool)
    x[0, 0] = [1, 1]          # step 0: two input spikes
    x[0, 2, 0] = 1            # step 2: one
    s0 = np.zeros((1, 4, 3), bool)
    s0[0, 1, 2] = 1           # layer a spikes once, at step 1
    s1 = np.zeros((1, 4, 2), bool)
    c = count(g, x, [s0, s1])
    assert c[0]["synaptic_ops"] == 3 * 3 and c[0]["spikes"] == 1
    assert c[0]["updates_active"] == 2 * 3 and c[0]["updates_inactive"] == 2 * 3
    assert c[1]["synaptic_ops"] == 1 * 2 and c[1]["spikes"] == 0
    assert c[1]["updates_active"] == 1 * 2 and c[1]["updates_inactive"] == 3 * 2
    e = LOIHI.energy_j
    r = estimate(g, c, samples=1, target=LOIHI)
    want = (11 * e["synaptic_op"] + 8 * e["neuron_update_active"]
            + 12 * e["neuron_update_inactive"] + 1 * e["spike_in_tile"])
    assert abs(r["total_j_per_inference"] - want) < 1e-24
    assert r["ann_baseline"]["macs"] == 2 * 3 + 3 * 2
