"""Counters, NeuroBench metrics and energy on hand-built networks whose counts are known
exactly; the same counts from Lava and from the emulator."""
import numpy as np
import pytest

from ahsar_deploy import emulator
from ahsar_deploy.energy_report import compare_targets, count, estimate, neurobench
from ahsar_deploy.ir import DeployGraph, Layer
from exporters import lava
from hw_targets import LOIHI, LOIHI2, SPINNAKER, SPINNAKER2, TRUENORTH
from hw_targets.cmos45 import BASELINE


def _graph(*layers, steps=4):
    return DeployGraph(layers=tuple(layers), n_inputs=layers[0].n_in, steps=steps, dataset="x",
                       encoding="x", method="baseline", source_sha256="", target="loihi")


def test_counts_and_energy_by_hand():
    l0 = Layer(name="a", weight=np.zeros((3, 2)), threshold=np.ones(3), i_decay=1, v_decay=1, vth=1)
    l1 = Layer(name="b", weight=np.zeros((2, 3)), threshold=np.ones(2), i_decay=1, v_decay=1, vth=1)
    g = _graph(l0, l1)
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
    assert c[0]["per_step"]["synaptic_ops"] == [6, 0, 3, 0]
    assert c[1]["per_step"]["updates_active"] == [0, 2, 0, 0]
    assert c[0]["synaptic_ops_nonzero"] == 0          # all weights are zero
    e = LOIHI.energy_j
    r = estimate(g, c, samples=1, target=LOIHI)
    want = (11 * e["synaptic_op"] + 8 * e["neuron_update_active"]
            + 12 * e["neuron_update_inactive"] + 1 * e["spike_in_tile"])
    assert abs(r["dynamic_j_per_inference"] - want) < 1e-24
    assert r["ann_baseline"]["macs"] == 2 * 3 + 3 * 2
    assert r["neurobench"]["ConnectionSparsity"] == 1.0


# A memoryless network: i_decay 4096 clears u every step and v_decay 4095 keeps
# trunc(v / 4096) = 0 of |v| < 4096, so a neuron spikes at step t iff (W x_t) > vth.
W_A = np.array([[2, 2, 0], [0, 2, -2]])     # a0: x0 or x1; a1: x1 and not x2 (vth 1)
W_B = np.array([[2, 2]])                     # b0: a0 and a1 (vth 3)
X = np.array([[[1, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 1]]], dtype=bool)   # 1 sample, 4 steps
SPIKES_A = [[1, 1], [1, 0], [0, 0], [1, 0]]
SPIKES_B = [[1], [0], [0], [0]]


def _hand_net():
    a = Layer(name="a", weight=W_A, threshold=np.ones(2), i_decay=4096, v_decay=4095, vth=1)
    b = Layer(name="b", weight=W_B, threshold=np.ones(1), i_decay=4096, v_decay=4095, vth=3)
    return _graph(a, b)


def _check_hand_counts(c):
    a, b = c
    assert a["per_step"] == {"input_spikes": [2, 2, 0, 2], "spikes": [2, 1, 0, 1],
                             "synaptic_ops": [4, 4, 0, 4],      # input spikes x 2 outputs
                             "synaptic_ops_nonzero": [3, 2, 0, 3],  # fan-out of x0, x1, x2: 1, 2, 1
                             "updates_active": [2, 2, 0, 2], "updates_inactive": [0, 0, 2, 0]}
    assert b["per_step"] == {"input_spikes": [2, 1, 0, 1], "spikes": [1, 0, 0, 0],
                             "synaptic_ops": [2, 1, 0, 1], "synaptic_ops_nonzero": [2, 1, 0, 1],
                             "updates_active": [1, 1, 0, 1], "updates_inactive": [0, 0, 1, 0]}
    assert (a["synaptic_ops"], a["synaptic_ops_nonzero"], a["spikes"]) == (12, 8, 4)
    assert (b["synaptic_ops"], b["synaptic_ops_nonzero"], b["spikes"]) == (4, 4, 1)


def test_emulator_counts_on_hand_network():
    g = _hand_net()
    sa, sb = emulator.run(g, X)
    np.testing.assert_array_equal(sa[0], SPIKES_A)
    np.testing.assert_array_equal(sb[0], SPIKES_B)
    c = count(g, X, [sa, sb])
    _check_hand_counts(c)

    nb = neurobench(g, c, samples=1, target=LOIHI)
    assert nb["ActivationSparsity"] == 1 - 5 / 12       # 5 spikes of 3 neurons x 4 steps
    assert nb["SynapticOperations"] == {"Effective_ACs": 12.0, "Effective_MACs": 0.0,
                                         "Dense": (3 * 2 + 2 * 1) * 4}
    assert nb["Footprint"] == 8 * 1 + 2 * 8        # 8 one-byte weights, 2 x (vth, du, dv)
    assert nb["Footprint_float32"] == 4 * (8 + 6)
    assert nb["ConnectionSparsity"] == 0.25             # 2 zero weights of 8

    r = estimate(g, c, samples=1, target=LOIHI)
    pj = 1e-12
    # 16 synaptic ops, 9 active and 3 inactive updates, 5 spike messages (1 core each)
    want = (16 * 23.6 + 9 * 81 + 3 * 52 + 5 * 1.7) * pj
    assert r["dynamic_j_per_inference"] == pytest.approx(want, rel=1e-12)
    # busiest core per step, ns: a: 35.0, 32.9, 10.6, 32.9; b: 17.5, 11.9, 5.3, 11.9
    assert r["time_per_step_s"] == pytest.approx(111.4e-9 / 4, rel=1e-12)
    assert r["static_j_per_inference"] == pytest.approx(0.104 * 111.4e-9, rel=1e-12)
    # honest totals: dynamic + static, over 4 steps of 27.85 ns
    assert r["total_j_per_inference"] == pytest.approx(want + 0.104 * 111.4e-9, rel=1e-12)
    assert r["latency_s_per_inference"] == pytest.approx(111.4e-9, rel=1e-12) and r["total_includes_static"]
    assert r["energy_delay_product_js"] == pytest.approx((want + 0.104 * 111.4e-9) * 111.4e-9, rel=1e-12)
    assert estimate(g, c, 1, LOIHI2)["dynamic_j_per_inference"] == r["dynamic_j_per_inference"]
    tn = estimate(g, c, 1, TRUENORTH)
    assert tn["total_j_per_inference"] == pytest.approx(12 * 26 * pj, rel=1e-12)   # nonzero events
    assert tn["static_j_per_inference"] is None and not tn["total_includes_static"]
    ann = r["ann_baseline"]
    assert ann["macs"] == 8
    assert ann["int8_j"] == pytest.approx(8 * 0.23 * pj, rel=1e-12)
    assert ann["int8_sram_j"] == pytest.approx((8 * 0.23 + 10) * pj, rel=1e-12)    # one 64-bit read
    assert ann["fp32_sram_j"] == pytest.approx((8 * 4.6 + 4 * 10) * pj, rel=1e-12)
    # SpiNNaker (Höppner 2019 via keras-spiking): every routed synaptic op, every neuron update
    sp = estimate(g, c, 1, SPINNAKER)
    assert sp["dynamic_j_per_inference"] == pytest.approx(16 * 13.3e-9 + 12 * 26e-9, rel=1e-12)
    assert sp["total_j_per_inference"] == sp["dynamic_j_per_inference"] and not sp["total_includes_static"]
    assert sp["latency_s_per_inference"] == pytest.approx(4e-3)                     # 4 steps of 1 ms
    sp2 = estimate(g, c, 1, SPINNAKER2)
    assert sp2["dynamic_j_per_inference"] == pytest.approx(16 * 450 * pj + 12 * 2.19e-9, rel=1e-12)
    assert sp2["neurobench"]["Footprint"] == 8 * 2 + 2 * 8                    # 16-bit weights
    assert [t["target"] for t in compare_targets(g, c, 1)] == ["loihi", "loihi2", "truenorth",
                                                                "spinnaker", "spinnaker2"]


def test_lava_counts_equal_emulator_counts_on_hand_network(tmp_path):
    g = _hand_net()
    lava.write_netx(g, tmp_path / "model.net")
    got = lava.run(tmp_path, X, g.steps, timeout_s=300, progress=False)
    _check_hand_counts(count(g, X, got))
    assert count(g, X, got) == count(g, X, emulator.run(g, X))


def test_ann_baseline_memory_sizes():
    assert BASELINE.weight_reads_j(8 * 1024, 1) == 1024 * 10e-12           # fits 8 KB
    assert BASELINE.weight_reads_j(8 * 1024 + 1, 1) == 1025 * 20e-12       # needs 32 KB
    assert BASELINE.weight_reads_j(2 ** 20 + 8, 1) == (2 ** 17 + 1) * 1.3e-9   # DRAM


def test_conv_energy_by_hand():
    """A 2x2 conv (2 channels, one zero tap each) on a 3x3 input, then a dense readout;
    counts, every energy model and the NeuroBench figures worked out by hand."""
    k = np.array([[[[1, 0], [1, 1]]], [[[0, 1], [1, 1]]]])         # (2, 1, 2, 2)
    conv = Layer(name="c", weight=k, threshold=np.ones(2), i_decay=1, v_decay=0, kind="conv",
                 in_shape=(1, 3, 3), vth=100000)                     # out (2, 2, 2); never spikes
    dense = Layer(name="d", weight=np.ones((1, 8), int), threshold=np.ones(1), i_decay=1, v_decay=0, vth=1)
    g = _graph(conv, dense, steps=2)
    x = np.zeros((1, 2, 9), bool)
    x[0, 0, 0] = 1          # step 0: corner pixel (0, 0), in window (0, 0) only, tap (0, 0)
    x[0, 1, 4] = 1          # step 1: centre pixel, in all four windows, taps (1,1) (1,0) (0,1) (0,0)
    spikes = emulator.run(g, x)
    assert not any(s.any() for s in spikes)
    c = count(g, x, spikes)
    assert c[0]["per_step"]["synaptic_ops"] == [2 * 1, 2 * 4]        # routed: channels x windows
    assert c[0]["per_step"]["synaptic_ops_nonzero"] == [1, 3 + 3]    # taps with a nonzero weight
    assert (c[0]["updates_active"], c[0]["updates_inactive"]) == (16, 0)
    assert (c[1]["synaptic_ops"], c[1]["updates_active"], c[1]["updates_inactive"]) == (0, 0, 2)
    pj, ns = 1e-12, 1e-9
    r = estimate(g, c, 1, LOIHI)
    dynamic = (10 * 23.6 + 16 * 81 + 2 * 52) * pj
    assert r["dynamic_j_per_inference"] == pytest.approx(dynamic, rel=1e-12)
    # busiest core per step: conv 2 (then 8) ops x 3.5 ns + 8 active updates x 8.4 ns; dense 5.3 ns
    assert r["time_per_step_s"] == pytest.approx((74.2 + 95.2) / 2 * ns, rel=1e-12)
    assert r["latency_s_per_inference"] == pytest.approx(169.4 * ns, rel=1e-12)
    assert r["total_j_per_inference"] == pytest.approx(dynamic + 0.104 * 169.4 * ns, rel=1e-12)
    assert estimate(g, c, 1, TRUENORTH)["total_j_per_inference"] == pytest.approx(7 * 26 * pj, rel=1e-12)
    assert estimate(g, c, 1, SPINNAKER)["dynamic_j_per_inference"] == pytest.approx((10 * 13.3 + 18 * 26) * ns,
                                                                                   rel=1e-12)
    assert estimate(g, c, 1, SPINNAKER2)["total_j_per_inference"] == pytest.approx(10 * 450 * pj + 18 * 2.19 * ns,
                                                                                  rel=1e-12)
    nb = r["neurobench"]
    assert nb["SynapticOperations"] == {"Effective_ACs": 7.0, "Effective_MACs": 0.0, "Dense": (8 * 4 + 8) * 2}
    assert nb["ActivationSparsity"] == 1.0 and nb["ConnectionSparsity"] == round(2 / 16, 4)
    assert r["ann_baseline"]["macs"] == 8 * 4 + 8


def test_recurrent_layer_counts_by_hand():
    """A 2-neuron recurrent layer: its own spikes are routed to both neurons (nonzero
    weights: one), and a step whose only input is recurrent counts as active."""
    rec = np.array([[0, 0], [5, 0]])                  # neuron 0 -> neuron 1 only
    l = Layer(name="r", weight=np.ones((2, 1), int), threshold=np.ones(2), i_decay=1, v_decay=0, vth=1,
              recurrent=rec)
    g = _graph(l, steps=3)
    x = np.array([[[1], [0], [0]]], bool)             # one input spike at step 0
    s = np.array([[[1, 0], [0, 1], [0, 0]]], bool)    # neuron 0 at step 0, neuron 1 at step 1
    c = count(g, x, [s])[0]
    assert c["per_step"]["synaptic_ops"] == [2 + 2, 2, 0]     # input to 2 neurons + own spike to 2
    assert c["per_step"]["synaptic_ops_nonzero"] == [2 + 1, 0, 0]   # neuron 1's column of rec is 0
    assert c["per_step"]["updates_active"] == [2, 2, 2]        # steps 1, 2: recurrent input only
    nb = neurobench(g, [c], 1, LOIHI)
    assert nb["SynapticOperations"]["Dense"] == (1 * 2 + 2 * 2) * 3
    assert nb["ConnectionSparsity"] == round(3 / 6, 4)         # 3 zero weights of 2 + 4
