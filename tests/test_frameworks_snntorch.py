"""Every snnTorch 1.0 neuron and option against snnTorch itself (docs/frameworks/snntorch.md).

Each row of the docs table is one test id here (test_every_docs_row_has_a_test keeps them
together). A row builds a small random network, nn.Linear + the neuron, three layers, with
weights on a 1/32 grid, thresholds off that grid and Bernoulli(0.3) input spikes (fixed
seeds), runs it in snnTorch in float64, exports it with snnTorch's export_to_nir, imports
it (exporters/nir_import.py) and runs the imported float graph (ahsar_deploy/emulator.py),
then asserts the row's verdict:
- exact: the same spike in every neuron-step of every layer;
- approx: the import emits a finding (build._import_findings, which --strict refuses), the
  spikes differ (the difference the docs give), and where the project models snnTorch's
  neuron (emulator.run_float_snntorch_delayed) that model equals snnTorch spike for spike;
- refused: a one-line error naming the reason, at export_to_nir or at the import.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir
from snntorch.functional import quant

from ahsar_deploy import build, emulator
from ahsar_deploy.errors import DeployError, FidelityError
from exporters import nir_import

DOC = Path(__file__).resolve().parents[1] / "docs" / "frameworks" / "snntorch.md"
N_IN, SIZES, T, N = 16, (12, 10, 6), 12, 48
BETA, ALPHA = 0.875, 0.75            # 1 - 512/4096 and 1 - 1024/4096: on Loihi's decay grid


def _heaviside(x):
    """snnTorch's spike in the membrane's dtype (its surrogates return float32)."""
    return (x > 0).to(x.dtype)


def _vec(n, v):
    return torch.full((n,), float(v))


def _th(n, rng):
    return torch.from_numpy(rng.uniform(0.7, 1.1, n).astype(np.float32))


def _leaky(**kw):
    return lambda n, rng: snn.Leaky(beta=_vec(n, BETA), threshold=_th(n, rng), init_hidden=True, **kw, spike_grad=_heaviside)


def _synaptic(**kw):
    return lambda n, rng: snn.Synaptic(alpha=_vec(n, ALPHA), beta=_vec(n, BETA), threshold=_th(n, rng),
                                       init_hidden=True, **kw, spike_grad=_heaviside)


def _rleaky(**kw):
    return lambda n, rng: snn.RLeaky(beta=_vec(n, BETA), threshold=_th(n, rng), linear_features=n,
                                     init_hidden=True, **kw, spike_grad=_heaviside)


def _rsynaptic(**kw):
    return lambda n, rng: snn.RSynaptic(alpha=_vec(n, ALPHA), beta=_vec(n, BETA), threshold=_th(n, rng),
                                        linear_features=n, init_hidden=True, **kw, spike_grad=_heaviside)


ZERO = {"reset": "zero"}
NODELAY = {"reset": "zero", "reset_delay": 0}
# id: (neuron factory, Linear bias, graph metadata the user adds, verdict, what the refusal says)
ROWS = {
    "Leaky-zero": (_leaky(reset_mechanism="zero"), False, ZERO, "exact", None),
    "Leaky-zero-reset_delay_False": (_leaky(reset_mechanism="zero", reset_delay=False), False, NODELAY, "exact", None),
    "Leaky-zero-Linear_bias": (_leaky(reset_mechanism="zero"), True, ZERO, "exact", None),
    "Leaky-zero-learn_beta_threshold": (_leaky(reset_mechanism="zero", learn_beta=True, learn_threshold=True),
                                        False, ZERO, "exact", None),
    "Leaky-subtract": (_leaky(), False, {}, "approx", 'reset_mechanism="subtract" subtracts the threshold'),
    "Leaky-none": (_leaky(reset_mechanism="none"), False, {}, "approx", 'reset_mechanism="subtract"'),
    "Leaky-reset_metadata_subtract": (_leaky(), False, {"reset": "subtract"}, "refused",
                                      'metadata says reset "subtract"'),
    "Leaky-beta_off_grid": (lambda n, rng: snn.Leaky(beta=_vec(n, 0.9), threshold=_th(n, rng), init_hidden=True,
                                                     reset_mechanism="zero"), False, ZERO, "rounded", None),
    "Leaky-beta_per_neuron_differs": (
        lambda n, rng: snn.Leaky(beta=torch.linspace(0.5, 0.9, n), threshold=_th(n, rng), init_hidden=True,
                                 reset_mechanism="zero"), False, ZERO, "refused", "differs across neurons"),
    "Leaky-scalar_beta_threshold": (lambda n, rng: snn.Leaky(beta=BETA, threshold=1.0, init_hidden=True,
                                                             reset_mechanism="zero"), False, ZERO, "refused",
                                    "Type inference error"),
    "Leaky-per_neuron_beta_scalar_threshold": (
        lambda n, rng: snn.Leaky(beta=_vec(n, BETA), threshold=1.0, init_hidden=True, reset_mechanism="zero"),
        False, ZERO, "refused", "All parameters must have the same shape"),
    "Leaky-graded_spikes_factor": (_leaky(reset_mechanism="zero", graded_spikes_factor=2.0), False, ZERO,
                                   "silent", None),
    "Leaky-inhibition": (_leaky(reset_mechanism="zero", inhibition=True), False, ZERO, "refused",
                         "Dimension out of range"),
    "Synaptic-zero": (_synaptic(reset_mechanism="zero"), False, ZERO, "approx", nir_import.DELAYED_RESET),
    "Synaptic-zero-reset_delay_False": (_synaptic(reset_mechanism="zero", reset_delay=False), False, NODELAY,
                                        "exact", None),
    "Synaptic-subtract": (_synaptic(), False, {}, "approx", 'reset_mechanism="zero", reset_delay=False'),
    "Synaptic-zero-Linear_bias": (_synaptic(reset_mechanism="zero", reset_delay=False), True, NODELAY, "refused",
                                  "a bias into a synaptic current with memory"),
    "RLeaky-zero": (_rleaky(reset_mechanism="zero"), False, ZERO, "approx", nir_import.DELAYED_RESET),
    "RLeaky-zero-reset_delay_False": (_rleaky(reset_mechanism="zero", reset_delay=False), False, NODELAY,
                                      "exact", None),
    "RSynaptic-zero": (_rsynaptic(reset_mechanism="zero"), False, ZERO, "refused",
                       "a bias into a synaptic current with memory"),
    "RSynaptic-zero-no_recurrent_bias": (_rsynaptic(reset_mechanism="zero"), False, ZERO, "approx",
                                         nir_import.DELAYED_RESET),
    "RSynaptic-zero-reset_delay_False-no_recurrent_bias": (
        _rsynaptic(reset_mechanism="zero", reset_delay=False), False, NODELAY, "refused",
        "Cannot find the input of an empty graph"),
    "Leaky-graded_spikes_factor-folded": (_leaky(reset_mechanism="zero", graded_spikes_factor=2.0), False, ZERO,
                                          "exact", None),
    "Leaky-state_quant": (_leaky(reset_mechanism="zero", state_quant=quant.state_quant(num_bits=4, uniform=True)),
                          False, ZERO, "silent", None),
    "DeltaLeaky": (lambda n, rng: snn.DeltaLeaky(beta=_vec(n, BETA), threshold=_th(n, rng), delta_threshold=0.5,
                                                 init_hidden=True, reset_mechanism="zero", spike_grad=_heaviside),
                   False, ZERO, "silent", None),
    "LeakyParallel": (lambda n, rng: snn.LeakyParallel(n, n, beta=BETA), False, ZERO, "refused",
                      "RNN: Expected input to be 2D or 3D"),
    "LinearLeaky": (lambda n, rng: snn.LinearLeaky(beta=BETA, in_features=n, out_features=n), False, ZERO,
                    "refused", "not enough values to unpack"),
    "StateLeaky": (lambda n, rng: snn.StateLeaky(beta=BETA, channels=n), False, ZERO, "refused",
                   "not enough values to unpack"),
    "SLSTM": (lambda n, rng: snn.SLSTM(n, n, init_hidden=True), False, ZERO, "refused",
              "must match the size of tensor b"),
    "SConv2dLSTM": (None, False, ZERO, "refused", "Cannot find the input of an empty graph"),
    "AssociativeLeaky": (lambda n, rng: snn.AssociativeLeaky(n, 2, 2, 4), False, ZERO, "refused",
                         "not enough values to unpack"),
    "Alpha": (lambda n, rng: snn.Alpha(alpha=_vec(n, 0.9), beta=_vec(n, BETA), threshold=_th(n, rng),
                                       init_hidden=True), False, ZERO, "refused", "'NoneType' object"),
    "Lapicque": (lambda n, rng: snn.Lapicque(beta=BETA, threshold=_th(n, rng), init_hidden=True,
                                             reset_mechanism="zero"), False, ZERO, "refused", "'NoneType' object"),
}


class _Chain(torch.nn.Sequential):
    """nn.Sequential that passes on the spikes of a neuron returning a tuple (DeltaLeaky)."""

    def forward(self, x):
        for m in self:
            x = m(x)
            x = x[0] if isinstance(x, tuple) else x
        return x


def _net(row: str, seed: int = 0):
    """(Linear, neuron) x 3 for ROWS[row], float32, weights k/32."""
    make, bias = ROWS[row][:2]
    if make is None:        # SConv2dLSTM: a convolutional LSTM on (C, H, W) input
        return _Chain(snn.SConv2dLSTM(1, 4, 3, init_hidden=True))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mods, n = [], N_IN
    for m in SIZES:
        lin = torch.nn.Linear(n, m, bias=bias)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(rng.integers(-10, 17, (m, n)) / 32))
            if bias:
                lin.bias.copy_(torch.from_numpy(rng.integers(-4, 5, m) / 32))
        neuron = make(m, rng)
        rec = getattr(neuron, "recurrent", None)
        if isinstance(rec, torch.nn.Linear):
            with torch.no_grad():
                rec.weight.copy_(torch.from_numpy(rng.integers(-8, 9, (m, m)) / 32))
                if row.endswith("no_recurrent_bias"):
                    rec.bias.zero_()
                else:
                    rec.bias.copy_(torch.from_numpy(rng.integers(-4, 5, m) / 32))
        mods += [lin, neuron]
        n = m
    return _Chain(*mods)


def _inputs(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(100 + seed).random((N, T, N_IN)) < 0.3).astype(np.uint8)


def _snntorch_spikes(net, x: np.ndarray) -> list[np.ndarray]:
    """Each neuron layer's spikes (N, T, n) bool, as snnTorch computes them, in float64."""
    net = net.double()
    snn_utils.reset(net)
    out = [[] for _ in SIZES]
    with torch.no_grad():
        for t in range(x.shape[1]):
            h, i = torch.from_numpy(x[:, t].astype(np.float64)), 0
            for m in net:
                h = m(h)
                if isinstance(h, tuple):
                    h = h[0]
                if not isinstance(m, torch.nn.Linear):
                    h = h.double()              # snnTorch's spikes are float32
                    out[i].append(h.numpy() != 0)
                    i += 1
    return [np.stack(o, 1) for o in out]


def _export(net, meta: dict):
    sample = torch.zeros((1, 8, 8) if isinstance(net[0], snn.SConv2dLSTM) else (N_IN,))
    with contextlib.redirect_stdout(io.StringIO()):     # export_to_nir prints unknown modules
        g = export_to_nir(net, sample)
    g.metadata.update(meta)
    return g


def _fold_graded(g, factor: float):
    """The fix for graded_spikes_factor: multiply it into every synapse after a neuron."""
    for k, node in g.nodes.items():
        if type(node).__name__ in ("Linear", "Affine") and k != "0":
            node.weight = node.weight * factor
    return g


def _differ(want, got) -> float:
    return sum(int((w != g).sum()) for w, g in zip(want, got)) / sum(w.size for w in want)


def _case(row: str, seed: int = 0):
    """(snnTorch spikes, imported graph, its float run, import findings) for ROWS[row]."""
    net, x = _net(row, seed), _inputs(seed)
    g = _export(net, ROWS[row][2])
    if row.endswith("-folded"):
        g = _fold_graded(g, 2.0)
    graph = nir_import.from_graph(g, dataset="random", steps=T)
    want = _snntorch_spikes(net, x)
    return want, graph, emulator.run(graph, x, integer=False), build._import_findings(graph, x), x


@pytest.mark.parametrize("row", list(ROWS))
def test_row(row):
    verdict, says = ROWS[row][3], ROWS[row][4]
    if verdict == "refused":        # by snnTorch's export_to_nir or by the import, in one line
        net = _net(row)
        with pytest.raises(Exception) as e:
            nir_import.from_graph(_export(net, ROWS[row][2]), dataset="random", steps=T)
        msg = str(e.value)
        assert says in msg and "\n" not in msg.strip(), msg
        return
    for seed in (0, 1):
        want, graph, got, findings, x = _case(row, seed)
        rate = [float(w.mean()) for w in want]
        assert all(0.02 < r < 0.95 for r in rate), rate          # the network is neither silent nor saturated
        if verdict == "exact":
            assert [int((w != g).sum()) for w, g in zip(want, got)] == [0, 0, 0], row
            assert findings == [], findings
        elif verdict == "approx":
            assert _differ(want, got) > 0.01, row
            assert len(findings) == 1 and says in findings[0]["detail"], findings
            if says == nir_import.DELAYED_RESET:        # the project's model of snnTorch's neuron is snnTorch's
                delayed = {l["layer"] for l in graph.notes["import"]["layers"] if l["snntorch_delayed_reset"]}
                assert delayed == {l.name for l in graph.layers}
                model = emulator.run_float_snntorch_delayed(graph, x, delayed)
                assert [int((w != m).sum()) for w, m in zip(want, model)] == [0, 0, 0]
                assert findings[0]["size"] == round(_differ(model, got), 4)
        elif verdict == "rounded":     # beta 0.9: v_decay 409.6 deployed as 410, in the import report
            rep = graph.notes["import"]["layers"][0]
            assert rep["v_decay"] == 410 and abs(rep["v_decay_exact"] - 409.6) < 1e-3
            assert findings == [] and _differ(want, got) < 0.01
        else:   # "silent": the graph does not carry the option, so nothing can notice
            assert findings == [] and _differ(want, got) > 0.005, row


def test_synaptic_zero_is_refused_by_strict_and_reset_delay_false_deploys(tmp_path):
    """--strict refuses Synaptic(reset "zero") with snnTorch's default reset_delay=True; the
    fix the finding names (reset_delay=False, said with metadata reset_delay = 0) builds."""
    import ahsar_deploy as ad
    x = _inputs()
    g = _export(_net("Synaptic-zero"), ZERO)
    with pytest.raises(FidelityError, match="reset_delay=True"):
        ad.export(g, "loihi", tmp_path / "a", calib=x, strict=True, qat="off", refit=False)
    assert not (tmp_path / "a").exists()
    g = _export(_net("Synaptic-zero-reset_delay_False"), NODELAY)
    m = ad.export(g, "loihi", tmp_path / "b", calib=x, strict=True, qat="off", refit=False)
    assert m["target"] == "loihi" and (tmp_path / "b" / "manifest.json").exists()


def test_reset_delay_metadata_is_checked():
    g = _export(_net("Synaptic-zero"), {"reset": "zero", "reset_delay": "no"})
    with pytest.raises(DeployError, match="metadata reset_delay 'no': expected 0 or 1"):
        nir_import.from_graph(g, dataset="random", steps=T)


def test_every_docs_row_has_a_test():
    """The docs table and ROWS name the same rows, and each verdict agrees."""
    rows = re.findall(r"^\| `([^`]+)` \|[^|]*\|[^|]*\| \*\*(\w+)\*\*", DOC.read_text(), re.MULTILINE)
    assert rows, "no table rows found in " + str(DOC)
    assert sorted(r for r, _ in rows) == sorted(ROWS)
    word = {"exact": "exact", "approx": "approximation", "rounded": "approximation", "refused": "refused",
            "silent": "silent"}
    assert {r: v for r, v in rows} == {r: word[ROWS[r][3]] for r in ROWS}
