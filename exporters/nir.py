"""NIR export: the deployed network as a standard NIR graph (neuromorphs/NIR 1.0).

Nodes: Input -> per layer (Linear | Conv2d) -> CubaLIF -> ... -> Output, with a Flatten
node before a Linear that follows a Conv2d. A layer without voltage leak (v_decay 0) is
written as IF (i_decay 4096) or LI -> IF (i_decay < 4096) instead of the CubaLIF (see
_neurons: a CubaLIF with tau_mem = inf never integrates its input). Shapes are NIR's,
without a batch dimension: Input (n,) or (C, H, W); Conv2d input_shape (H, W), weight
(C_out, C_in, kh, kw); neuron parameters shaped like the layer output, (n,) or
(C_out, H_out, W_out).

Units and discretisation. NIR's CubaLIF is the continuous-time ODE
    tau_syn dI/dt = -I + w_in S,   tau_mem dv/dt = (v_leak - v) + r I,   spike if v > v_th.
This toolchain discretises it with step dt (graph metadata dt_s = 2**-10 s, about 1 ms) as
    I[t] = I[t-1] + dt/tau_syn (-I[t-1] + w_in S[t])
    v[t] = v[t-1] + dt/tau_mem (v_leak - v[t-1] + r I[t])        (the new I, same step)
    s[t] = v[t] > v_th;  v[t] <- v_reset where s[t]
which is what norse.torch.from_nir runs (LIBoxCell then LIFBoxCell). With
    tau_syn = dt / (i_decay/4096), w_in = tau_syn/dt, tau_mem = dt / (v_decay/4096),
    r = tau_mem/dt, v_leak = v_reset = 0, v_th = 1
I is Loihi's u and v is Loihi's v: the float version of Loihi's update. After
calibration the graph is in integer units (Loihi's state / 64): Linear/Conv2d weights
W_int * 2**weight_exp and v_threshold = vth; before, the float weights and thresholds.

Why dt = 2**-10 s: with Loihi's power-of-two decays (e.g. 1024/4096, 512/4096) every
exported number is then exact in binary floating point (tau_syn = 2**-8 s, 1/tau_syn =
256, dt/tau_syn = 0.25, w_in = 4; integer weights and thresholds), so a reader that
follows the discretisation, e.g. norse's from_nir in float64, computes exactly the
float model: its spikes equal ours even where v equals the threshold exactly, which
integer weights make common. (Weights in threshold units, W_int / vth with threshold 1,
are inexact: on an MNIST-sized CNN they split such ties on 0.014 % of the first layer's
neuron-steps. dt = 1e-3 s gives inexact 1/tau, exact enough in the cases measured, but
2**-10 makes exactness certain for power-of-two decays.)

Recurrent weights and biases (ir.py Layer.recurrent, Layer.bias). A recurrent layer gets a
Linear node rec{i} (weights R, scaled as W) with the loop as edges lif{i} -> rec{i} ->
(first neuron node of layer i: the CubaLIF, or the LI of LI -> IF). NIR sums a node's
inputs; a loop delivers the previous step's output (nirtorch's interpreter: a cyclic
input is read from the state, `{src}_prev_output`), so the current gets R s[t-1], as on
Loihi. A bias b (added to v every step) is written exactly:
    i_decay = 4096 (u = W x + b, no memory): as the bias of an Affine fc{i} (w_in = 1);
    else, v_decay > 0: as the CubaLIF's v_leak = b / (v_decay/4096), since
        v[t] = v + dt/tau_mem (v_leak - v + r I[t]) = dv v + (dt/tau_mem) v_leak + I[t];
    else (no voltage leak, a synaptic current): no NIR node holds it exactly (IF has no
        v_leak; an Affine bias would be filtered by the LI): UnsupportedLayerError.
norse's from_nir (norse/torch/utils/import_nir.py) also feeds a CubaLIF's v_leak into its
synaptic current (LIBoxParameters(v_leak=node.v_leak)), unlike NIR's CubaLIF: a layer
written with v_leak != 0 runs differently in norse; the Affine form runs exactly.

Completeness: the integer parameters and the target's data ride in node metadata
(the spiking node, CubaLIF or IF: vth_mant, weight_int, weight_exp, weight_bits, i_decay,
v_decay, layer name, recurrent_int and bias_int where the layer has them...; graph: dataset, steps, encoding, target...), so rebuild_netx() recreates model.net from
model.nir alone, byte for byte. The importer of third-party graphs is nir_import.py.
"""
from __future__ import annotations

import io
from pathlib import Path

import nir
import numpy as np

from ahsar_deploy.errors import BuildError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer

DT_S = 2.0 ** -10            # seconds per time step (see the module docstring)
PRODUCER = "ahsar-deploy"


def bias_form(l: Layer) -> str | None:
    """How layer l's bias is written (module docstring): None (no bias), "affine" or
    "v_leak". Raises UnsupportedLayerError for a bias NIR cannot hold exactly."""
    if l.bias is None:
        return None
    if l.i_decay == 4096:
        return "affine"
    if l.v_decay > 0:
        return "v_leak"
    raise UnsupportedLayerError(
        f"nir: {l.name} has a bias, a current decay (i_decay {l.i_decay}) and no voltage leak: no NIR "
        "node adds a bias to v exactly; give it a voltage leak (v_decay > 0), i_decay 4096, or no bias")


def check_exportable(graph: DeployGraph) -> None:
    """Raise UnsupportedLayerError now, before calibration, for what to_nir cannot write."""
    for l in graph.layers:
        bias_form(l)


def _neurons(l: Layer, i: int) -> dict:
    """The NIR nodes of layer l's neurons, in chain order: {name: node}. The spiking node is
    always f"lif{i}" and carries the layer's metadata.

    v_decay > 0: one CubaLIF (module docstring). v_decay = 0 (no voltage leak, e.g. every
    imported IF layer): NIR's CubaLIF cannot hold it (tau_mem = inf makes dt/tau_mem = 0, so
    v never integrates), so it is written exactly as
        i_decay = 4096: IF (r = 1):            v[t] = v + W x[t]           (u = W x: no memory)
        i_decay < 4096: LI -> IF (r = 1), LI with tau = tau_syn, r = tau/dt, v_leak = 0:
                        u[t] = u + dt/tau (-u + r W x[t]) = (1 - i_decay/4096) u + W x[t]
    IF is read per step (v += r I, as sinabs and norse's from_nir run it, and as
    nir_import.py reads it), not as v += dt r I. norse's from_nir has no LI, so the norse
    backend refuses the LI -> IF form (exporters/norse.py)."""
    shape = l.out_shape
    a_i, a_v = l.i_decay / 4096.0, l.v_decay / 4096.0
    tau_syn = DT_S / a_i if a_i > 0 else np.inf
    th = float(l.vth) if l.vth is not None else l.neuron_thresholds().reshape(shape)
    th = np.broadcast_to(th, shape).astype(np.float64)
    meta = {"layer": l.name, "kind": l.kind, "i_decay": l.i_decay, "v_decay": l.v_decay,
            "reset": l.reset, "regulated": int(l.regulated),
            "train_rate": np.nan if l.train_rate is None else float(l.train_rate)}
    if l.vth is not None:
        meta.update({"vth_mant": l.vth, "weight_exp": l.weight_exp, "weight_bits": l.weight_bits,
                     "weight_int": np.asarray(l.weight, dtype=np.int32),
                     "scale": np.nan if l.scale is None else float(l.scale)})
        for key, a in (("recurrent_int", l.recurrent), ("bias_int", l.bias)):
            if a is not None:
                meta[key] = np.asarray(a, dtype=np.int32)
    if l.v_decay == 0:
        nodes = {}
        if l.i_decay != 4096:
            nodes[f"cur{i}"] = nir.LI(tau=np.full(shape, tau_syn), r=np.full(shape, tau_syn / DT_S),
                                      v_leak=np.zeros(shape),
                                      metadata={"layer": l.name, "role": f"synaptic current of lif{i}"})
        nodes[f"lif{i}"] = nir.IF(r=np.ones(shape), v_threshold=th, v_reset=np.zeros(shape), metadata=meta)
        return nodes
    tau_mem = DT_S / a_v
    v_leak = np.asarray(l.bias, dtype=np.float64) / a_v if bias_form(l) == "v_leak" else np.zeros(shape)
    return {f"lif{i}": nir.CubaLIF(
        tau_syn=np.full(shape, tau_syn), tau_mem=np.full(shape, tau_mem),
        r=np.full(shape, tau_mem / DT_S), v_leak=v_leak.reshape(shape),
        v_threshold=th, v_reset=np.zeros(shape),
        w_in=np.full(shape, tau_syn / DT_S if a_i > 0 else 1.0), metadata=meta)}


def to_nir(graph: DeployGraph) -> nir.NIRGraph:
    first = graph.layers[0]
    in_shape = first.in_shape if first.kind == "conv" else (graph.n_inputs,)
    nodes = {"input": nir.Input(input_type=np.array(in_shape))}
    edges = []
    prev, prev_layer = "input", None
    for i, l in enumerate(graph.layers):
        # integer units after calibration: W_int * 2**exp (threshold vth); else the float weights
        scale = 2.0 ** l.weight_exp if l.vth is not None else 1.0
        w = np.asarray(l.weight, dtype=np.float64) * scale
        if l.kind == "conv":
            nodes[f"fc{i}"] = nir.Conv2d(
                input_shape=tuple(int(v) for v in l.in_shape[1:]), weight=w,
                stride=tuple(l.stride), padding=tuple(l.padding), dilation=(1, 1), groups=1,
                bias=np.zeros(l.channels), metadata={"layer": l.name})
        else:
            if prev_layer is not None and prev_layer.kind == "conv":
                nodes[f"flatten{i}"] = nir.Flatten(input_type={"input": np.array(prev_layer.out_shape)},
                                                   start_dim=0, end_dim=-1)
                edges.append((prev, f"flatten{i}"))
                prev = f"flatten{i}"
            if bias_form(l) == "affine":
                nodes[f"fc{i}"] = nir.Affine(weight=w, bias=np.asarray(l.bias, dtype=np.float64),
                                             metadata={"layer": l.name})
            else:
                nodes[f"fc{i}"] = nir.Linear(weight=w, metadata={"layer": l.name})
        edges.append((prev, f"fc{i}"))
        prev = f"fc{i}"
        neurons = _neurons(l, i)
        for k, node in neurons.items():
            nodes[k] = node
            edges.append((prev, k))
            prev = k
        if l.recurrent is not None:   # the loop's edges before the chain's next edge from lif{i}
            nodes[f"rec{i}"] = nir.Linear(weight=np.asarray(l.recurrent, dtype=np.float64) * scale,
                                          metadata={"layer": l.name, "role": "recurrent"})
            edges += [(f"lif{i}", f"rec{i}"), (f"rec{i}", next(iter(neurons)))]
        prev, prev_layer = f"lif{i}", l
    nodes["output"] = nir.Output(output_type=np.array(graph.layers[-1].out_shape))
    edges.append((prev, "output"))
    meta = {"producer": PRODUCER, "dt_s": DT_S, "steps": graph.steps, "n_inputs": graph.n_inputs,
            "dataset": graph.dataset, "encoding": graph.encoding, "method": graph.method,
            "target": graph.target or "float", "source_sha256": graph.source_sha256,
            "float_accuracy": np.nan if graph.float_accuracy is None else float(graph.float_accuracy),
            "discretization": "I then v with the new I (forward Euler, Loihi order); spike if v > "
                              "threshold; v <- v_reset",
            "layer_order": ",".join(l.name for l in graph.layers)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def write(graph: DeployGraph, path: str | Path) -> None:
    """Write the integer graph as NIR (to_nir) to `path`. The HDF5 file is built in memory and
    written by Python: h5py writing to a full disk leaves objects that crash the process
    when freed (segmentation fault); this way a failed write is a plain OSError."""
    buf = io.BytesIO()
    nir.write(buf, to_nir(graph), compression_opts=1)   # gzip level 1: 0.17 s, not 0.26 s (MNIST MLP)
    Path(path).write_bytes(buf.getvalue())


def _opt(v):
    v = float(v)
    return None if np.isnan(v) else v


def graph_from_build_nir(path: str | Path) -> DeployGraph:
    """The integer DeployGraph of a model.nir written by this toolchain (metadata only)."""
    try:
        g = nir.read(str(path), type_check=False)
        meta = g.metadata
        if meta.get("producer") != PRODUCER or meta.get("target") in (None, "float"):
            raise BuildError(f"{path}: not a calibrated model.nir written by {PRODUCER}")
        names = str(meta["layer_order"]).split(",")
        by_name = {n.metadata.get("layer"): (k, n) for k, n in g.nodes.items()
                   if isinstance(n, (nir.CubaLIF, nir.IF))}     # the spiking node of each layer
        syn = {n.metadata.get("layer"): n for n in g.nodes.values()
               if isinstance(n, (nir.Linear, nir.Affine, nir.Conv2d)) and n.metadata.get("role") != "recurrent"}
        layers = []
        for name in names:
            _, lif = by_name[name]
            m = lif.metadata
            s = syn[name]
            w = np.asarray(m["weight_int"]).astype(np.int64)
            extra = {field: np.asarray(m[key]).astype(np.int64)
                     for key, field in (("recurrent_int", "recurrent"), ("bias_int", "bias")) if key in m}
            if isinstance(s, nir.Conv2d):
                c_in = w.shape[1]
                extra.update({"kind": "conv", "in_shape": (c_in, *(int(v) for v in s.input_shape)),
                              "stride": tuple(int(v) for v in s.stride),
                              "padding": tuple(int(v) for v in s.padding)})
            layers.append(Layer(
                name=name, weight=w, threshold=np.ones(w.shape[0]), i_decay=int(m["i_decay"]),
                v_decay=int(m["v_decay"]), reset=str(m["reset"]), regulated=bool(m["regulated"]),
                train_rate=_opt(m["train_rate"]), vth=int(m["vth_mant"]),
                weight_exp=int(m["weight_exp"]), weight_bits=int(m["weight_bits"]),
                scale=_opt(m["scale"]), **extra))
        return DeployGraph(layers=tuple(layers), n_inputs=int(meta["n_inputs"]), steps=int(meta["steps"]),
                           dataset=str(meta["dataset"]), encoding=str(meta["encoding"]),
                           method=str(meta["method"]), source_sha256=str(meta["source_sha256"]),
                           float_accuracy=_opt(meta["float_accuracy"]), target=str(meta["target"]))
    except BuildError:
        raise
    except Exception as e:  # missing keys, wrong types, unreadable file
        raise BuildError(f"{path}: cannot rebuild from this NIR file ({type(e).__name__}: {e})") from None


def rebuild_netx(nir_path: str | Path, net_path: str | Path) -> DeployGraph:
    """Write model.net from model.nir alone (the same bytes as the export wrote)."""
    from . import lava
    graph = graph_from_build_nir(nir_path)
    lava.write_netx(graph, net_path)
    return graph
