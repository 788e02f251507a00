"""Our NeuroBench metrics (energy_report.count + energy_report.neurobench) against the
`neurobench` package's own implementations (2.x), on the same deployed integer network
and the same spikes.

The torch twin of a DeployGraph: per layer, nn.Linear / nn.Conv2d (no bias) holding the
layer's integer weights as float32, then a snnTorch CUBA-LIF neuron (snn.Synaptic, with
the layer's decays and threshold) whose forward checks that its input current is the
emulator's and then replays the emulator's spikes of that layer for the samples and step
at hand. NeuroBench finds the Linear/Conv2d as connection layers and the snn.Synaptic
(an snn.SpikingNeuron) as neuron layers, and its SNNTorchModel steps the net one time
step at a time, as its Benchmark workflow does; so both sides count the same spikes.
"""
import numpy as np
import pytest

pytest.importorskip("neurobench")

import snntorch as snn  # noqa: E402
import torch  # noqa: E402
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity, Footprint  # noqa: E402
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations  # noqa: E402
from neurobench.models import SNNTorchModel  # noqa: E402
from torch import nn  # noqa: E402

from ahsar_deploy import emulator  # noqa: E402
from ahsar_deploy.energy_report import count, macs, neurobench  # noqa: E402
from ahsar_deploy.ir import DeployGraph, Layer  # noqa: E402
from hw_targets import LOIHI  # noqa: E402

STEPS, SAMPLES, BATCH = 6, 11, 4      # batches of 4, 4, 3: NeuroBench's per-sample averaging


def _weights(rng, shape):
    """Even integer weights in [-80, 120] with about 30 % exact zeros."""
    w = 2 * rng.integers(-40, 61, size=shape)
    w[rng.random(shape) < 0.3] = 0
    return w


def _graph(*layers):
    return DeployGraph(layers=tuple(layers), n_inputs=layers[0].n_in, steps=STEPS, dataset="random",
                       encoding="random", method="baseline", source_sha256="", target="loihi")


def _dense_graph():
    rng = np.random.default_rng(17)
    d0 = Layer(name="fc0", weight=_weights(rng, (12, 20)), threshold=np.ones(12), i_decay=1024,
               v_decay=512, vth=200)
    d1 = Layer(name="fc1", weight=_weights(rng, (5, 12)), threshold=np.ones(5), i_decay=2048,
               v_decay=256, vth=150)
    return _graph(d0, d1)


def _conv_graph():
    """conv 3x3 with zero padding 1 -> conv 2x2 stride 2 without padding -> dense."""
    rng = np.random.default_rng(23)
    c0 = Layer(name="conv0", weight=_weights(rng, (3, 2, 3, 3)), threshold=np.ones(3), i_decay=1024,
               v_decay=512, kind="conv", in_shape=(2, 6, 5), padding=(1, 1), vth=150)
    c1 = Layer(name="conv1", weight=_weights(rng, (4, 3, 2, 2)), threshold=np.ones(4), i_decay=2048,
               v_decay=256, kind="conv", in_shape=c0.out_shape, stride=(2, 2), vth=200)
    d = Layer(name="fc2", weight=_weights(rng, (5, c1.n_out)), threshold=np.ones(5), i_decay=1024,
              v_decay=512, vth=200)
    return _graph(c0, c1, d)


class _Cursor:
    """Which samples (start, batch) and step t the twin is at: SNNTorchModel calls
    net.reset() before each batch and net(x[:, t]) once per step."""
    start = batch = t = 0


class _ReplayCUBA(snn.Synaptic):
    """snnTorch's CUBA-LIF with the layer's parameters; forward replays the emulator."""

    def __init__(self, layer: Layer, spikes: np.ndarray, current: np.ndarray, cursor: _Cursor):
        super().__init__(alpha=1 - layer.i_decay / 4096, beta=1 - layer.v_decay / 4096,
                         threshold=float(layer.vth), reset_mechanism="zero")
        shape = (spikes.shape[0], spikes.shape[1], *layer.out_shape)
        # plain attributes, not buffers: NeuroBench's footprint must not see them
        self.replay = torch.from_numpy(spikes.reshape(shape).astype(np.float32))
        self.want_current = torch.from_numpy(current.reshape(shape).astype(np.float32))
        self.cursor = cursor

    def forward(self, cur):
        c = self.cursor
        rows = slice(c.start, c.start + c.batch)
        assert torch.equal(cur, self.want_current[rows, c.t]), "twin's current is not the emulator's"
        spk = self.replay[rows, c.t]
        zero = torch.zeros_like(spk)
        return spk, zero, zero          # (spk, syn, mem) as snn.Synaptic with init_hidden=False


class _Twin(nn.Module):
    def __init__(self, graph: DeployGraph, x: np.ndarray, spikes: list[np.ndarray]):
        super().__init__()
        self.cursor = _Cursor()
        mods, h = [], x
        for layer, s in zip(graph.layers, spikes):
            w = torch.from_numpy(np.asarray(layer.weight, dtype=np.float32))
            if layer.kind == "conv":
                syn = nn.Conv2d(layer.in_shape[0], layer.channels, tuple(w.shape[2:]),
                                stride=layer.stride, padding=layer.padding, bias=False)
                mods += [nn.Flatten(), nn.Unflatten(1, layer.in_shape), syn]
            else:
                syn = nn.Linear(layer.n_in, layer.n_out, bias=False)
                mods += [nn.Flatten(), syn]
            syn.weight.data = w
            assert layer.weight_exp == 0     # so the emulator's a_out is W x, no shift
            mods.append(_ReplayCUBA(layer, s, emulator.synaptic_int(layer, h), self.cursor))
            h = s
        self.layers = nn.ModuleList(mods)

    def reset(self):
        c = self.cursor
        c.start, c.batch, c.t = c.start + c.batch, 0, 0

    def forward(self, x_t):
        self.cursor.batch = x_t.shape[0]
        h = x_t
        for m in self.layers:
            h = m(h)
            if isinstance(h, tuple):
                h, _, mem = h
        self.cursor.t += 1
        return h, mem


def _taps_in_bounds(layer: Layer) -> int:
    """Synapses of one all-ones input step that land on an input, not on zero padding
    (NeuroBench's dense count of one layer and step): n_out x n_in for dense; for conv,
    C_out x C_in x, per spatial axis, the sum over output positions of the kernel taps
    within the input."""
    if layer.kind != "conv":
        return layer.n_out * layer.n_in
    c_out, c_in, *kernel = np.asarray(layer.weight).shape
    taps = c_out * c_in
    for size, k, s, p, o in zip(layer.in_shape[1:], kernel, layer.stride, layer.padding,
                                layer.out_shape[1:]):
        taps *= sum(sum(0 <= j * s - p + i < size for i in range(k)) for j in range(o))
    return taps


def _run_both(graph: DeployGraph, names):
    x = np.random.default_rng(5).random((SAMPLES, STEPS, graph.n_inputs)) < 0.3
    spikes = emulator.run(graph, x)
    assert all(0 < s.mean() < 1 for s in spikes), [float(s.mean()) for s in spikes]   # not trivial
    ours = neurobench(graph, count(graph, x, spikes), SAMPLES, LOIHI)

    twin = _Twin(graph, x, spikes)
    model = SNNTorchModel(twin)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x.astype(np.float32)), torch.zeros(SAMPLES))
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False)
    theirs = Benchmark(model, loader, [], [], names).run(quiet=True)
    # every sample and step went through the twin (each current checked against the emulator)
    assert (twin.cursor.start + twin.cursor.batch, twin.cursor.t) == (SAMPLES, STEPS)
    assert len(model.connection_layers()) == len(graph.layers)
    assert len(model.activation_layers()) == len(graph.layers)
    return graph, ours, theirs


METRIC_CLASSES = [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]]


@pytest.fixture(scope="module", params=["dense", "conv"])
def both(request):
    graph = _dense_graph() if request.param == "dense" else _conv_graph()
    return _run_both(graph, METRIC_CLASSES)


def test_metric_names_as_neurobench_reports_them(both):
    """NeuroBench 2.x keys its results by the metric class's name when metrics are given
    as classes (the current API); SynapticOperations is a dict of three keys."""
    _, _, theirs = both
    assert set(theirs) == {"Footprint", "ConnectionSparsity", "ActivationSparsity", "SynapticOperations"}
    assert set(theirs["SynapticOperations"]) == {"Effective_MACs", "Effective_ACs", "Dense"}
    assert None not in theirs.values()       # Benchmark turns a failing metric into None / 0.0


def test_deprecated_string_names_give_snake_case_keys():
    """The deprecated string API keys results by the given snake_case names, same values."""
    graph, ours, theirs = _run_both(
        _dense_graph(), [["footprint", "connection_sparsity"], ["activation_sparsity", "synaptic_operations"]])
    assert set(theirs) == {"footprint", "connection_sparsity", "activation_sparsity", "synaptic_operations"}
    assert theirs["activation_sparsity"] == pytest.approx(ours["ActivationSparsity"], rel=1e-12)
    assert theirs["synaptic_operations"]["Effective_ACs"] == ours["SynapticOperations"]["Effective_ACs"]


def test_activation_sparsity_equals_neurobench(both):
    # NeuroBench: per batch zeros / outputs of every spiking layer over the steps, averaged
    # over batches weighted by batch size: the same ratio as ours up to float rounding
    _, ours, theirs = both
    assert 0 < ours["ActivationSparsity"] < 1
    assert theirs["ActivationSparsity"] == pytest.approx(ours["ActivationSparsity"], rel=1e-12)


def test_effective_synaptic_ops_equal_neurobench(both):
    # NeuroBench: every step, every connection layer run on its binarized input with
    # binarized weights and no bias, summed; all inputs are in {0, 1} so all are ACs
    _, ours, theirs = both
    sops = theirs["SynapticOperations"]
    assert sops["Effective_ACs"] > 0
    assert sops["Effective_ACs"] == ours["SynapticOperations"]["Effective_ACs"]
    assert sops["Effective_MACs"] == ours["SynapticOperations"]["Effective_MACs"] == 0


def test_dense_synaptic_ops_against_neurobench(both):
    """NeuroBench's dense: all-ones inputs and weights through each layer, per step; its
    all-ones input does not fill a conv's zero padding, so a padded conv counts only the
    kernel taps that land on the input. Ours counts the same (it was n_out x fan_in)."""
    graph, ours, theirs = both
    steps = graph.steps
    assert theirs["SynapticOperations"]["Dense"] == steps * sum(_taps_in_bounds(l) for l in graph.layers)
    assert ours["SynapticOperations"]["Dense"] == theirs["SynapticOperations"]["Dense"]
    if any(l.kind == "conv" and any(l.padding) for l in graph.layers):   # the case that differed
        assert ours["SynapticOperations"]["Dense"] < steps * sum(macs(l) for l in graph.layers)


def test_connection_sparsity_equals_neurobench(both):
    _, ours, theirs = both
    assert 0 < ours["ConnectionSparsity"] < 1
    assert theirs["ConnectionSparsity"] == ours["ConnectionSparsity"]


def test_footprint_against_neurobench(both):
    """NeuroBench's footprint is numel x element size of the torch model's parameters and
    buffers: here float32 weights plus what snn.Synaptic holds per layer: threshold, alpha,
    beta (float32, 4 B each), graded_spikes_factor (float32, 4 B) and reset_mechanism_val
    (int64, 8 B); its state buffers syn and mem are empty before a run. Ours counts the
    deployed parameters: footprint_float32_bytes = weights, vth and two decays as float32;
    footprint_bytes = weights at the target's 8 bits, vth 4 B, decays 2 B each."""
    graph, ours, theirs = both
    n_w = sum(np.asarray(l.weight).size for l in graph.layers)
    n_l = len(graph.layers)
    assert theirs["Footprint"] == 4 * n_w + n_l * (4 + 4 + 4 + 4 + 8)
    assert ours["Footprint_float32"] == 4 * n_w + n_l * (4 + 4 + 4)
    assert theirs["Footprint"] - ours["Footprint_float32"] == n_l * (4 + 8)   # snnTorch's extras
    assert ours["Footprint"] == n_w * 1 + n_l * (4 + 2 + 2)
