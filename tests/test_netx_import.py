"""exporters/netx_import.py: lava-dl netx .net files -> quantized DeployGraph.

(a) lava-dl's own files and ground truth (site-packages/tests/lava/lib/dl/netx, installed
    by the lava-dl wheel): gts/dense's Dense block output (test_blocks.py test_dense) is
    reproduced by the emulator, mnist.net imports without its input neuron and runs in
    Lava as in the emulator, and tiny/pilotnet/ntidigits are refused naming what is missing.
(b) a slayer CUBA network (dense, and conv -> conv -> flatten -> dense) trained a few steps
    on digits and written by slayer's own export_hdf5 runs identically in slayer (with its
    delay shift), in the emulator and in Lava.
(c) a build's model.net (write_netx) imports to the same layers and writes back byte for byte.
(d) every refused feature: one line naming file, layer, field.
All Lava runs share one worker (conftest lava_equals_emulator_many).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import h5py
import shutil

import numpy as np
import pytest

from ahsar_deploy import checkpoint, data, emulator
from ahsar_deploy.errors import ModelFileError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer
from exporters import netx_import
from exporters.lava import write_netx

NETX = Path(h5py.__file__).resolve().parents[1] / "tests" / "lava" / "lib" / "dl" / "netx"
needs_netx_files = pytest.mark.skipif(not (NETX / "mnist.net").is_file(),
                                      reason="lava-dl's netx test files are not installed")
CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 410, "vThMant": 64, "refDelay": 1, "gradedSpike": False}


def write_net(path: Path, layers: list[dict], t_sample: int | None = None) -> Path:
    """A .net file as slayer/netx lay it out: each dict has 'type' and datasets by name;
    'neuron' is a dict of neuron datasets."""
    with h5py.File(path, "w") as f:
        for i, spec in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", (1,), "S10", [spec["type"].encode()])
            for key, val in spec.items():
                if key == "type":
                    continue
                if key == "neuron":
                    for k, v in val.items():
                        g.create_dataset(f"neuron/{k}", data=v)
                else:
                    g.create_dataset(key, data=val)
        if t_sample is not None:
            f.create_dataset("simulation/tSample", data=t_sample)
    return path


def same_layers(a: tuple[Layer, ...], b: tuple[Layer, ...]) -> None:
    assert len(a) == len(b)
    for la, lb in zip(a, b):
        assert la.kind == lb.kind
        np.testing.assert_array_equal(np.asarray(la.weight), np.asarray(lb.weight))
        assert (la.vth, la.i_decay, la.v_decay, la.weight_exp) == (lb.vth, lb.i_decay, lb.v_decay, lb.weight_exp)
        if la.kind == "conv":
            assert (la.in_shape, la.stride, la.padding) == (lb.in_shape, lb.stride, lb.padding)


def spikes(rng, n, t, f, p):
    return (rng.random((n, t, f)) < p).astype(np.uint8)


# ----------------------------------------------------------------------- weights vs Lava

def test_dense_weights_as_lava_runs_them():
    """lava_dense_weights equals lava-dl netx optimize_weight_bits followed by Lava's Dense
    clip_weights / truncate_weights and a_out >> -weight_exp, on edge cases and random
    matrices (odd, even, one-signed, with zeros)."""
    import ahsar_deploy.lava_compat  # noqa: F401  (before lava)
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    def lava(w):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                w1, bits, exp, _ = optimize_weight_bits(w.astype(int))
            except OverflowError:
                return None
        mode = determine_sign_mode(w1)
        w2 = truncate_weights(clip_weights(w1, mode, num_bits=8), mode, bits).astype(np.int64)
        assert exp <= 0
        return None if np.any(w2 % (1 << -exp)) else w2 >> -exp

    edge = {(-3, 5, 200): (-3, 5, 200), (1, 3, -7): (1, 3, -7), (255, -3): (254, -3),
            (-256, -4): (-252, -4), (0, -128, -2): (0, -127, -2), (-129, -1, 0): (0, 0, 0),
            (0, 0): None, (254, -256): (254, -256), (255, 0): (255, 0)}
    for w, want in edge.items():
        got = netx_import.lava_dense_weights(np.array([w]))
        assert (got is None and want is None) or got.tolist() == [list(want)], w
    rng = np.random.default_rng(0)
    values = [-256, -255, -129, -128, -127, -3, -1, 0, 1, 2, 3, 127, 128, 200, 254, 255]
    for _ in range(3000):
        lo, hi = sorted(rng.choice(values, 2))
        step = int(rng.choice([1, 1, 2, 4, 16]))
        w = np.clip(rng.integers(lo // step, hi // step + 1, size=(rng.integers(1, 4), rng.integers(1, 5))) * step,
                    -256, 255)
        want, got = lava(w), netx_import.lava_dense_weights(w)
        assert (want is None) == (got is None), w
        if want is not None:
            np.testing.assert_array_equal(got, want, err_msg=str(w))


# ----------------------------------------------------------------------- (a) lava-dl's files

@needs_netx_files
def test_lava_dl_dense_block_ground_truth(tmp_path):
    """gts/dense (lava-dl test_blocks.py test_dense: Dense block, vth 6, du 4095, dv 415,
    2000 steps): the imported layer reproduces out.npy, one step late (Lava's Dense delay)."""
    w = np.load(NETX / "gts/dense/weight.npy")
    x = np.load(NETX / "gts/dense/in.npy")          # (200, 2000)
    gt = np.load(NETX / "gts/dense/out.npy")        # (256, 2000)
    net = write_net(tmp_path / "dense.net", [{"type": "dense", "shape": np.array([256]),
                                             "weight": w.astype(np.float32),
                                             "neuron": {**CUBA, "iDecay": 4096, "vDecay": 415, "vThMant": 6}}])
    g = netx_import.to_graph(net, steps=x.shape[1])
    (out,) = emulator.run(g, x.T[None].astype(np.uint8))
    assert gt.sum() > 1000
    assert not gt[:, 0].any()
    np.testing.assert_array_equal(out[0, :-1].T, gt[:, 1:].astype(bool))


@needs_netx_files
def test_mnist_net_input_neuron(tmp_path):
    """mnist.net's layer 0 is an input with a CUBA neuron and a transform (weight 76, bias
    64): netx builds a LIF Input block that only its bias drives, so it is refused; with
    skip_input_neuron it is dropped (netx's skip_layers=1) and 3 dense layers remain, the
    last with netx's default neuron (iDecay 0, vDecay 4096, vThMant 1 << 17)."""
    path = NETX / "mnist.net"
    with pytest.raises(UnsupportedLayerError) as e:
        netx_import.to_graph(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "layer 0 (input)" in msg and "'neuron'" in msg
    assert "shape only" in msg and "skip_input_neuron" in msg
    g = netx_import.to_graph(path, skip_input_neuron=True)
    assert (g.n_inputs, g.steps, g.method, g.encoding) == (784, 16, "netx-import", "rate")
    assert g.source_sha256 == checkpoint.sha256(path) and g.quantized
    assert g.notes["import"]["steps_from"] == "simulation/tSample"
    assert [l.weight.shape for l in g.layers] == [(512, 784), (512, 512), (10, 512)]
    assert [(l.vth, l.i_decay, l.v_decay) for l in g.layers] == [(80, 4096, 123), (80, 4096, 123),
                                                                  (1 << 17, 0, 4096)]
    with h5py.File(path) as f:
        for l, i in zip(g.layers, (1, 2, 3)):
            np.testing.assert_array_equal(l.weight, f[f"layer/{i}/weight"][()])
            assert l.weight_exp == 0 and l.scale == 1.0 and l.threshold[0] == l.vth


@needs_netx_files
@pytest.mark.parametrize("name, skip, layer, field", [
    ("tiny.net", False, "layer 0 (input)", "'neuron'"),
    ("tiny.net", True, "layer 1 (conv)", "'bias'"),
    ("gts/pilotnet_lif/network.net", False, "layer 0 (input)", "'neuron'"),
    ("gts/pilotnet_lif/network.net", True, "layer 1 (conv)", "'bias'"),
    ("gts/pilotnet_sdnn/network.net", True, "layer 1 (conv)", "'neuron/type'"),
    ("gts/ntidigits/ntidigits.net", False, "layer 2 (dense)", "'delay'"),
])
def test_lava_dl_networks_refused(name, skip, layer, field):
    """lava-dl's other trained networks need what the IR has not: input neurons driven by
    bias (tiny, pilotnet: graded pixel input), biases, SDNN, axonal delays."""
    path = NETX / name
    with pytest.raises(UnsupportedLayerError) as e:
        netx_import.to_graph(path, steps=16, skip_input_neuron=skip)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and layer in msg and field in msg and "deploys" in msg


# ----------------------------------------------------------------------- (b) slayer

@pytest.fixture(scope="module")
def slayer_nets(tmp_path_factory):
    """Two slayer CUBA networks trained 10 Adam steps on 128 digits samples (8 steps, rate
    code) and written with slayer's export_hdf5 (plus an input layer with the shape, which
    netx needs before a conv): {name: (build_dir, slayer output on the test inputs (N, 10, T))}."""
    import ahsar_deploy.lava_compat  # noqa: F401  (before lava)
    import torch
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    ds = data.load("digits")
    steps = 8
    x = torch.from_numpy(data.encode(ds.train.x[:128], steps, "rate")).float().permute(0, 2, 1)   # N F T
    y = torch.from_numpy(ds.train.y[:128]).long()
    xt = data.encode(ds.test.x[:24], steps, "rate")
    p = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.1, "tau_grad": 0.1,
         "scale_grad": 1.0, "requires_grad": False}
    cuba = slayer.block.cuba
    nets = {"dense": ([cuba.Dense(p, 64, 32, weight_scale=2), cuba.Dense(p, 32, 10, weight_scale=2)], None),
            "conv": ([cuba.Conv(p, 1, 4, 3, padding=1, weight_scale=2),
                      cuba.Conv(p, 4, 6, 3, padding=(0, 1), stride=(2, 1), weight_scale=2),
                      cuba.Flatten(), cuba.Dense(p, 6 * 3 * 8, 10, weight_scale=2)], (1, 8, 8))}
    out = {}
    root = tmp_path_factory.mktemp("slayer")
    for name, (blocks, in_shape) in nets.items():
        net = torch.nn.Sequential(*blocks)
        shaped = (lambda z: z) if in_shape is None else (lambda z: z.reshape(z.shape[0], *in_shape, z.shape[-1]))
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(10):
            loss = torch.nn.functional.cross_entropy(net(shaped(x)).sum(-1).flatten(1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            s = net(shaped(torch.from_numpy(xt).float().permute(0, 2, 1))).numpy()
        build = root / name
        build.mkdir()
        with h5py.File(build / "model.net", "w") as f:
            layer = f.create_group("layer")
            k = 0
            if in_shape is not None:
                g = layer.create_group("0")
                g.create_dataset("type", (1,), "S10", [b"input"])
                g.create_dataset("shape", data=np.array(in_shape))
                k = 1
            for i, b in enumerate(blocks):
                b.export_hdf5(layer.create_group(str(i + k)))
        out[name] = (build, s.reshape(s.shape[0], -1, steps))
    return {"steps": steps, "x": xt, **out}


def test_slayer_export_matches_slayer(slayer_nets):
    """slayer's own output equals the emulator's, shifted by slayer's one step per layer
    (delay_shift, slayer/block/base.py), for slayer's export_hdf5 of dense and conv nets."""
    steps = slayer_nets["steps"]
    for name in ("dense", "conv"):
        build, s = slayer_nets[name]
        g = netx_import.to_graph(build / "model.net", dataset="digits", steps=steps)
        kinds = [l.kind for l in g.layers]
        assert kinds == (["dense", "dense"] if name == "dense" else ["conv", "conv", "dense"])
        assert g.dataset == "digits" and g.n_inputs == 64
        assert all(np.all(l.weight % 2 == 0) for l in g.layers)      # slayer's 8-bit grid
        out = emulator.run(g, slayer_nets["x"])[-1]                   # (N, T, 10)
        d = len(g.layers)
        assert out.sum() > 0
        np.testing.assert_array_equal(s[:, :, d:].transpose(0, 2, 1) != 0, out[:, :steps - d])
        rec = g.notes["import"]["layers"]
        assert "inFeatures" in rec[-1]["ignored_fields"] and "refDelay" in rec[-1]["neuron_ignored"]


def test_lava_equals_emulator(slayer_nets, tmp_path, lava_equals_emulator_many):
    """One Lava worker: mnist.net's dense stack (as netx's skip_layers=1 builds it), both
    slayer exports, and odd weights / edge decays; every layer's spikes equal the emulator's."""
    rng = np.random.default_rng(0)
    cases = []
    if (NETX / "mnist.net").is_file():
        g = netx_import.to_graph(NETX / "mnist.net", skip_input_neuron=True)
        (tmp_path / "mnist").mkdir()
        write_netx(g, tmp_path / "mnist" / "model.net")
        with h5py.File(NETX / "mnist.net") as a, h5py.File(tmp_path / "mnist" / "model.net") as b:
            for i in range(3):   # what netx reads: weight and neuron (layer 3: netx's default neuron)
                np.testing.assert_array_equal(a[f"layer/{i + 1}/weight"][()], b[f"layer/{i}/weight"][()])
                src = a[f"layer/{i + 1}/neuron"] if i < 2 else netx_import.DEFAULT_NEURON
                for k in ("iDecay", "vDecay", "vThMant"):
                    assert int(np.asarray(src[k][()] if i < 2 else src[k])) == int(b[f"layer/{i}/neuron/{k}"][()])
        cases.append((tmp_path / "mnist", g, spikes(rng, 6, g.steps, 784, 0.2)))
    for name in ("dense", "conv"):
        build = slayer_nets[name][0]
        cases.append((build, netx_import.to_graph(build / "model.net", steps=slayer_nets["steps"]), slayer_nets["x"]))
    (tmp_path / "odd").mkdir()
    w0 = 2 * rng.integers(-60, 70, size=(16, 20)) + 1                 # odd, mixed: netx keeps them
    w1 = rng.integers(0, 128, size=(6, 16)) * 2 + 1                    # odd, excitatory
    write_net(tmp_path / "odd" / "model.net", [
        {"type": "input", "shape": np.array([20])},
        {"type": "dense", "shape": np.array([16]), "weight": w0.astype(np.float32),
         "neuron": {**CUBA, "iDecay": 0, "vDecay": 4096, "vThMant": 150}},
        {"type": "dense", "shape": np.array([6]), "weight": w1.astype(np.float32),
         "neuron": {**CUBA, "iDecay": 4096, "vDecay": 0, "vThMant": 900}}])
    cases.append((tmp_path / "odd", netx_import.to_graph(tmp_path / "odd" / "model.net", steps=10),
                  spikes(rng, 8, 10, 20, 0.3)))
    outs = lava_equals_emulator_many(cases)
    for (build, g, x), out in zip(cases, outs):
        for l, s in zip(g.layers[:2], out[:2]):     # hidden layers spike, but not always
            assert 0 < s.mean() < 0.9, (build.name, l.name, s.mean())


# ----------------------------------------------------------------------- (c) round trip

def test_round_trip_build(small_build, tmp_path):
    """A build's model.net imports to the layers build.load reads (with the manifest), and
    write_netx of the import is the same file, byte for byte."""
    from ahsar_deploy.build import load
    ref, manifest = load(small_build)
    g = netx_import.to_graph(small_build / "model.net", dataset=ref.dataset, steps=ref.steps)
    same_layers(g.layers, ref.layers)
    assert g.n_inputs == ref.n_inputs
    write_netx(g, tmp_path / "again.net")
    assert (tmp_path / "again.net").read_bytes() == (small_build / "model.net").read_bytes()


def test_round_trip_conv(conv_graph, tmp_path):
    """conv -> conv -> flatten -> dense (write_netx adds the input and flatten layers)."""
    write_netx(conv_graph, tmp_path / "a.net")
    g = netx_import.to_graph(tmp_path / "a.net", steps=conv_graph.steps)
    same_layers(g.layers, conv_graph.layers)
    assert g.n_inputs == conv_graph.n_inputs
    assert [r["type"] for r in g.notes["import"]["layers"]] == ["input", "conv", "conv", "flatten", "dense"]
    write_netx(g, tmp_path / "b.net")
    assert (tmp_path / "a.net").read_bytes() == (tmp_path / "b.net").read_bytes()
    assert netx_import.to_graph(tmp_path / "a.net").steps == conv_graph.steps   # write_netx records them


# ----------------------------------------------------------------------- (d) refusals

def _base() -> list[dict]:
    """input (2, 5, 5) -> conv 3x3 pad 1 (3 ch) -> flatten -> dense 4 (accepted)."""
    rng = np.random.default_rng(1)
    w_conv = (2 * rng.integers(-20, 20, (3, 2, 3, 3))).astype(np.float32)
    w_dense = (2 * rng.integers(-20, 20, (4, 75))).astype(np.float32)
    return [{"type": "input", "shape": np.array([2, 5, 5])},
            {"type": "conv", "shape": np.array([3, 5, 5]), "weight": w_conv, "stride": np.array([1, 1]),
             "padding": np.array([1, 1]), "dilation": np.array([1, 1]), "groups": 1, "neuron": dict(CUBA)},
            {"type": "flatten"},
            {"type": "dense", "shape": np.array([4]), "weight": w_dense, "neuron": dict(CUBA)}]


def _set(i, key, value):
    def edit(layers):
        if "/" in key:
            layers[i].setdefault("neuron", {})[key.split("/", 1)[1]] = value
        else:
            layers[i][key] = value
    return edit


def _dense_weight(w):
    def edit(layers):
        layers[3]["weight"] = np.asarray(w, dtype=np.float32)
        layers[3]["shape"] = np.array([len(w)])
    return edit


def _drop(i, key):
    return lambda layers: layers[i].pop(key)


def _insert(i, spec):
    return lambda layers: layers.insert(i, spec)


W75 = np.full((4, 75), 2.0)
REFUSED = {   # id: (edit, error, layer, field)
    "delay": (_set(3, "delay", np.ones(4)), UnsupportedLayerError, 3, "delay"),
    "bias": (_set(3, "bias", np.array([0, 1, 0, 0.])), UnsupportedLayerError, 3, "bias"),
    "conv bias": (_set(1, "bias", np.array([0, 0, 3.])), UnsupportedLayerError, 1, "bias"),
    "graded spike": (_set(3, "neuron/gradedSpike", True), UnsupportedLayerError, 3, "neuron/gradedSpike"),
    "message bits": (_set(1, "neuron/messageBits", 3), UnsupportedLayerError, 1, "neuron/messageBits"),
    "sdnn": (_set(3, "neuron/type", "SDNN"), UnsupportedLayerError, 3, "neuron/type"),
    "rf": (_set(3, "neuron/type", "RF"), UnsupportedLayerError, 3, "neuron/type"),
    "rf_iz": (_set(1, "neuron/type", "RF_IZ"), UnsupportedLayerError, 1, "neuron/type"),
    "unknown neuron": (_set(3, "neuron/type", "ALIF"), UnsupportedLayerError, 3, "neuron/type"),
    "dense_rec": (_set(3, "type", "dense_rec"), UnsupportedLayerError, 3, "type"),
    "weight_rec": (_set(3, "weight_rec", np.zeros((4, 4))), UnsupportedLayerError, 3, "weight_rec"),
    "dense_comp": (_set(3, "type", "dense_comp"), UnsupportedLayerError, 3, "type"),
    "complex weight": (lambda L: (L[3].pop("weight"), L[3].update({"weight/real": W75, "weight/imag": W75})),
                       UnsupportedLayerError, 3, "weight"),
    "groups": (_set(1, "groups", 2), UnsupportedLayerError, 1, "groups"),
    "dilation": (_set(1, "dilation", np.array([2, 2])), UnsupportedLayerError, 1, "dilation"),
    "pool": (_insert(2, {"type": "pool", "shape": np.array([3, 2, 2])}), UnsupportedLayerError, 2, "type"),
    "average": (_insert(4, {"type": "average", "shape": np.array([2])}), UnsupportedLayerError, 4, "type"),
    "convT": (_set(1, "type", "convT"), UnsupportedLayerError, 1, "type"),
    "unpool": (_insert(2, {"type": "unpool"}), UnsupportedLayerError, 2, "type"),
    "concat": (_insert(2, {"type": "concat"}), UnsupportedLayerError, 2, "type"),
    "unknown type": (_insert(2, {"type": "dropout"}), UnsupportedLayerError, 2, "type"),
    "input neuron": (_set(0, "neuron/type", "CUBA"), UnsupportedLayerError, 0, "neuron"),
    "input weight": (_set(0, "weight", 76.0), UnsupportedLayerError, 0, "weight"),
    "input bias": (_set(0, "bias", 64.0), UnsupportedLayerError, 0, "bias"),
    "fractional weight": (_dense_weight(np.full((4, 75), 2.5)), UnsupportedLayerError, 3, "weight"),
    "weight 300": (_dense_weight(np.full((4, 75), 300.0)), UnsupportedLayerError, 3, "weight"),
    "mixed 255 clipped": (_dense_weight(np.r_[[[255.0] + [-2.0] * 74], W75[1:]]), UnsupportedLayerError, 3, "weight"),
    "-256, no positive": (_dense_weight(-W75 * np.r_[128, [1] * 74]), UnsupportedLayerError, 3, "weight"),
    "-128 beside 0": (_dense_weight(-W75 * np.r_[64, 0, [1] * 73]), UnsupportedLayerError, 3, "weight"),
    "all-zero dense": (_dense_weight(0 * W75), UnsupportedLayerError, 3, "weight"),
    "conv weight 300": (lambda L: L[1]["weight"].__setitem__((0, 0, 0, 0), 300.0), UnsupportedLayerError, 1, "weight"),
    "per-neuron vth": (_set(3, "neuron/vThMant", np.array([64, 65, 64, 64])), UnsupportedLayerError, 3,
                       "neuron/vThMant"),
    "vDecay 5000": (_set(3, "neuron/vDecay", 5000), UnsupportedLayerError, 3, "neuron/vDecay"),
    "float vThMant": (_set(3, "neuron/vThMant", 64.0), ModelFileError, 3, "neuron/vThMant"),
    "flatten after dense": (lambda L: L.extend([{"type": "flatten"}, {"type": "dense", "shape": np.array([2]),
                                                "weight": np.full((2, 4), 2.0), "neuron": dict(CUBA)}]),
                            UnsupportedLayerError, 4, "type"),
    "conv after dense": (lambda L: L.append(L[1]), UnsupportedLayerError, 4, "type"),
    "no flatten": (lambda L: L.pop(2), ModelFileError, 2, "type"),
    "conv shape": (_set(1, "shape", np.array([3, 4, 4])), ModelFileError, 1, "shape"),
    "conv stride missing": (_drop(1, "stride"), ModelFileError, 1, "stride"),
    "conv neuron missing": (_drop(1, "neuron"), ModelFileError, 1, "neuron"),
    "dense inputs": (_dense_weight(np.full((4, 74), 2.0)), ModelFileError, 3, "weight"),
}


def test_base_network_accepted(tmp_path):
    g = netx_import.to_graph(write_net(tmp_path / "base.net", _base()), steps=3)
    assert [l.kind for l in g.layers] == ["conv", "dense"] and g.n_inputs == 50
    assert g.layers[0].in_shape == (2, 5, 5) and g.layers[0].padding == (1, 1)


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_in_one_line(case, tmp_path):
    edit, error, layer, field = REFUSED[case]
    layers = _base()
    edit(layers)
    path = write_net(tmp_path / "net.net", layers)
    with pytest.raises(error) as e:
        netx_import.to_graph(path, steps=4)
    msg = str(e.value)
    assert type(e.value) is error
    assert "\n" not in msg and str(path) in msg, msg
    assert f"layer {layer} " in msg and f"field {field!r}" in msg, msg
    if error is UnsupportedLayerError:
        assert "deploys" in msg, msg


def test_zero_bias_and_unread_fields_are_noted(tmp_path):
    layers = _base()
    layers[3]["bias"] = np.zeros(4)
    layers[3]["wgtExp"] = 3
    g = netx_import.to_graph(write_net(tmp_path / "n.net", layers, t_sample=5))
    assert g.steps == 5
    notes = " ".join(g.notes["import"]["notes"])
    assert "all-zero bias" in notes and "wgtExp" in notes


def test_untrusted_files(tmp_path):
    """Not HDF5, truncated, no layer group, links to other files: one-line ModelFileError."""
    bad = tmp_path / "model.pt.net"
    bad.write_bytes(b"\x80\x04\x95pickle, never loaded")
    good = write_net(tmp_path / "good.net", _base())
    cut = tmp_path / "cut.net"
    cut.write_bytes(good.read_bytes()[:1500])
    empty = tmp_path / "empty.net"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=1)
    linked = tmp_path / "linked.net"
    write_net(linked, _base())
    with h5py.File(linked, "a") as f:
        f["layer/3/extra"] = h5py.ExternalLink(str(good), "/layer/3/weight")
    hidden = tmp_path / "hidden.net"
    write_net(hidden, _base())
    with h5py.File(hidden, "a") as f:
        f["layer/3"].create_dataset("ext", shape=(4,), dtype="f4", external=[(str(good), 0, 16)])
    for path, text in ((bad, "not an HDF5 file"), (cut, "netx"), (empty, "no 'layer' group"),
                       (linked, "ExternalLink"), (hidden, "outside the file"),
                       (tmp_path / "missing.net", "no such netx file")):
        with pytest.raises(ModelFileError) as e:
            netx_import.to_graph(path, steps=4)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and text in msg, msg


def test_graph_fields(tmp_path):
    g = netx_import.to_graph(write_net(tmp_path / "n.net", _base()), dataset="digits", steps=7)
    assert isinstance(g, DeployGraph) and g.quantized
    assert (g.dataset, g.steps, g.method) == ("digits", 7, "netx-import")
    assert g.source_sha256 == checkpoint.sha256(tmp_path / "n.net")
    assert set(g.notes["import"]) >= {"layers", "notes", "input_shape", "steps_from"}
    with pytest.raises(ModelFileError, match="time steps"):
        netx_import.to_graph(tmp_path / "n.net", steps=0)


def test_cli_exports_runs_and_prices_a_netx_file(small_build, tmp_path, cli_inproc):
    """`ahsar-export MODEL.net` deploys a netx network as it is (a build's own model.net
    comes out byte for byte), `ahsar run MODEL.net` runs it, `ahsar energy` prices it."""
    import json

    from ahsar_deploy import build as build_mod
    net = small_build / "model.net"
    code, _, err = cli_inproc("export", net, "--data", "digits", "-o", tmp_path / "b", "-q")
    assert code == 0, err     # the steps come from the file's simulation/tSample
    assert (tmp_path / "b" / "model.net").read_bytes() == net.read_bytes()
    q, _ = build_mod.load(tmp_path / "b")
    orig, _ = build_mod.load(small_build)
    assert all(np.array_equal(a.weight, b.weight) and a.vth == b.vth for a, b in zip(q.layers, orig.layers))
    code, out1, err = cli_inproc("run", tmp_path / "b", "--backend", "emulator", "--samples", "20", "--json", "-q")
    assert code == 0, err
    code, out2, err = cli_inproc("run", small_build, "--backend", "emulator", "--samples", "20", "--json", "-q")
    assert json.loads(out1)["predictions"] == json.loads(out2)["predictions"]
    code, out, err = cli_inproc("energy", tmp_path / "b", "--backend", "emulator", "--samples", "20", "--json", "-q")
    assert code == 0 and json.loads(out)["total_j_per_inference"] > 0, err
    # a netx file without tSample and no spike data: one line asking for the steps
    import h5py
    shutil.copy(net, tmp_path / "bare.net")
    with h5py.File(tmp_path / "bare.net", "a") as f:
        del f["simulation"]
    code, _, err = cli_inproc("export", tmp_path / "bare.net", "--data", "digits", "-o", tmp_path / "c")
    assert code == 1 and "time steps" in err and len(err.strip().splitlines()) == 1, err
    # and without any data: one line asking for them
    code, _, err = cli_inproc("export", net, "-o", tmp_path / "d")
    assert code == 1 and "no calibration data: pass --data" in err, err
