"""NIR import: a .nir graph written by any library -> float DeployGraph (untrusted input).

Accepted: one chain Input -> [SumPool2d | AvgPool2d]* [Flatten] (Affine | Linear | Conv2d)
-> [LI] (CubaLIF | LIF | IF) -> ... -> Output (an LI only as the synaptic current of an
IF or LIF, as exporters/nir.py writes a layer without voltage leak). Pooling (kernel k x k,
stride k, no padding) on spikes is fused into the following synapse
(ahsar_deploy/passes/fuse.py); Flatten is C, H, W order (the IR's). Every other node, and every field outside what Loihi and this
toolchain deploy, is rejected with a one-line error naming the node, the field and why.
A spiking node's metadata "regulated" (0/1) and "train_rate" (NaN: unknown), written by
exporters/nir.py and by ahsar_deploy/regulate.py annotate_nir for a user's snnTorch/norse
model, become Layer.regulated and Layer.train_rate (the deploy-time sparsity check).

Discretisation (NIR neurons are continuous-time ODEs). With step dt (--dt; else the dt the
graph shows, see below; else 1 ms), forward Euler, current first:
    CubaLIF  I[t] = I + dt/tau_syn (-I + w_in W x[t]);  v[t] = v + dt/tau_mem (v_leak - v + r I[t])
    LIF      v[t] = v + dt/tau (v_leak - v + r W x[t])
    IF       v[t] = v + r W x[t]                       (one step, as sinabs' IAF)
    LI -> IF/LIF   I[t] = I + dt/tau_li (-I + r_li W x[t]), the IF/LIF's input
    spike s = v > v_threshold, then v <- v_reset.
This is Loihi's CUBA update with
    i_decay = round(4096 dt/tau_syn) (CubaLIF; LI before IF/LIF: dt/tau_li; else 4096),
    v_decay = round(4096 dt/tau_mem) (CubaLIF, LIF; 0 for IF),
    weights of neuron i scaled by g_i = (dt/tau_mem) r_i (dt/tau_syn) w_in_i (CubaLIF),
    (dt/tau) r_i (LIF), r_i (IF), times (dt/tau_li) r_li with an LI; thresholds
    v_threshold, folded later.
The decays are the only rounding (to 1/4096, then to the nearest value Loihi's registers
hold: i_decay 1..4096, v_decay 0..4095, hw_targets/loihi.py); the import report gives each
layer's exact and deployed decay, and a decay moved by more than rounding (tau_mem = dt,
a memoryless membrane: exact v_decay 4096, deployed 4095) is also a logged warning.
dt/tau within REL_TOL of 1 counts as tau = dt (a float32 tau is not dt in float64).
Recurrence: a spiking node X (CubaLIF, LIF or IF) may have exactly one loop through one
Affine or Linear node R, X -> R -> X (or -> the LI that feeds X): NIR sums a node's inputs
and a loop delivers the previous step's output (nirtorch's interpreter), so R's weights,
scaled by X's gain g like W, become Layer.recurrent: u[t] = du u + g (W x[t] + R s[t-1]).
Any other cycle, a second loop, or a loop on a conv layer is refused, naming the node.
Biases map onto Loihi's per-neuron v-bias b (v[t] = dv v + u + b, ir.py) by this rule:
    v_leak L of a CubaLIF or LIF:  b += (dt/tau_mem) L   (exact: the ODE adds it to v);
    an Affine bias c (the synapse's, or the loop's), a constant input:  b += g c, exact
        only where the current has no memory (i_decay 4096: IF, LIF, CubaLIF with
        tau_syn = dt, no LI); with tau_syn > dt the current filters c, which is not a v-bias.
Refused: an Affine bias into a current with memory, v_leak of an LI (the current),
biases on a conv layer (netx holds one per channel; the IR one per neuron).
Rejected: tau < dt (forward Euler is unstable at this dt),
tau = inf for CubaLIF/LIF (the neuron gets no input in this ODE), non-zero
v_reset, time constants that differ within a layer
(one decay per layer here), r or w_in <= 0, thresholds <= 0, per-pixel parameters of a
conv layer that differ within a channel.

The time step a graph was written for (dt_s None: not given by the user):
- snnTorch 1.0's export_to_nir (.venv/.../snntorch/export_nir.py) hard-codes dt = 1e-4 s
  and writes Leaky(beta) as LIF(tau = dt/(1-beta), r = tau/dt, v_leak = v_reset = 0) and
  Synaptic(alpha, beta) as CubaLIF(tau_syn = dt/(1-alpha), tau_mem = dt/(1-beta),
  r = tau_mem/dt, w_in = tau_syn/dt); exporters/nir.py writes r = tau_mem/dt and
  w_in = tau_syn/dt too (dt = 2**-10 s). So where every r != 1 (and w_in != 1) of the
  graph's LIF, CubaLIF and LI nodes equals tau/dt_g for one dt_g (within REL_TOL), the
  graph shows its dt: dt_s None takes dt_g, and a dt_s that differs is refused (the
  per-step gain (dt/tau) r = dt/dt_g and every decay would change). r = 1 shows nothing
  (norse, sinabs and hand-written graphs use r = 1 with any tau). Otherwise dt_s None
  is DEFAULT_DT_S. graph.notes["import"]["dt_from"] says which.
- snnTorch's Leaky and Synaptic default to reset_mechanism="subtract" (v -= threshold;
  .venv/.../snntorch/_neurons/leaky.py, neurons.py); NIR has no such field and
  export_to_nir writes v_reset = 0, so a graph with snnTorch's signature (dt_g = 1e-4 s)
  gets a logged warning, also in notes["import"]["notes"]. With metadata reset "zero",
  Leaky deploys exactly (leaky.py _base_zero zeroes mem[t-1] only: Loihi's reset), but
  Synaptic, RSynaptic and RLeaky with reset_delay=True (their default) zero the whole new
  membrane, that step's input included, on the step after a spike (DELAYED_RESET): a
  warning names their nodes (CubaLIF; LIF with a loop), and the report's layer entry has
  snntorch_delayed_reset (ahsar_deploy/build.py measures the difference). With
  reset_delay=False snnTorch resets at the spike, Loihi's neuron exactly; the user says so
  with metadata reset_delay = 0 (NIR has no field for it; docs/frameworks/snntorch.md).

norse 1.1 to_nir (.venv/.../norse/torch/utils/export_nir.py, to_nir(..., dt=0.001))
writes LIFCell as CubaLIF(tau_mem = dt/tau_mem_inv, tau_syn = dt/tau_syn_inv, r = 1,
w_in absent: NIR's default 1), LIFBoxCell as LIF(tau = dt/tau_mem_inv, r = 1), i.e.
tau_written = dt_w * tau with to_nir's dt_w, which nothing in the file records (no
metadata; r and w_in are 1 whatever dt_w is), so dt_w cannot be inferred.
tau_convention="norse" reads tau as tau_written / 1e-3 s (to_nir's default dt_w),
"norse:DT" as tau_written / DT; dt_s None then deploys at dt_w, another dt_s is a
re-discretisation and logged. Such a graph read in seconds is rejected because its tau
(1e-5 s) is below dt. A leading batch dimension of 1 in the Input type (norse with a
batched sample) is dropped.
Under a norse convention a CubaLIF is norse's LIFCell, which is not NIR's CubaLIF:
lif_feed_forward_step (norse/torch/functional/lif.py) runs
    i <- i + W x[t];  v <- v + dt tau_mem_inv (v_leak - v + i);  i <- i - dt tau_syn_inv i
(the input enters the current unscaled, and v sees it on the same step), i.e. Loihi's
CUBA with gain g = dt tau_mem_inv r w_in: no dt/tau_syn factor (with it, as NIR's ODE
reads, norse 1.1's default tau_syn_inv = 200 at dt 1 ms gives a 5x weaker input; norse's
own from_nir also misreads the tau_syn it wrote). LIFBoxCell (LIF), IAFCell (IF) and
LIBoxCell (LI) follow NIR's equations above. to_nir writes neither v_reset nor
LIFBoxCell's reset_method, and LIFCell starts at v = v_leak (Loihi at 0): what the file
cannot show is caught, if at all, by the export's comparison with the rates the model
had in training (train_rate metadata) or with --reference predictions (build.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from ahsar_deploy.errors import DeployError, ModelFileError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer, conv_out_hw
from ahsar_deploy.passes.fuse import fuse_pool
from hw_targets import LOIHI

log = logging.getLogger(__name__)

MAX_NODES = 1000
MAX_ELEMENTS = 1 << 26          # per file, all datasets together (float64: 512 MiB)
TAU_CONVENTIONS = ("seconds", "norse", "norse:DT")
DEFAULT_DT_S = 1e-3             # s per step when neither the user nor the graph gives one
NORSE_TO_NIR_DT = 1e-3          # s: to_nir's default dt (norse/torch/utils/export_nir.py)
SNNTORCH_DT = 1e-4              # s: hard-coded in snntorch/export_nir.py (Leaky, Synaptic, ...)
SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "SumPool2d",
             "AvgPool2d", "CubaLIF", "LIF", "IF")
WHY = {
    "LI": "a leaky integrator emits no spikes; Loihi layers spike: end with a LIF/CubaLIF layer "
          "and read out spike counts",
    "CubaLI": "a leaky integrator emits no spikes; Loihi layers spike: end with a LIF/CubaLIF layer",
    "I": "an integrator emits no spikes; only spiking neurons (CubaLIF, LIF, IF) deploy",
    "Threshold": "a stateless threshold has no Loihi neuron; use IF or LIF",
    "Scale": "a scale between layers is not deployed; multiply it into the weights before export",
    "Delay": "synaptic delays are not deployed by this toolchain",
    "Conv1d": "only 2-d convolutions deploy; write a Conv2d with a height of 1",
    "NoneType": "no NIR node: the writer had none for this module (norse 1.1's to_nir maps LIFCell, "
                "LIFBoxCell, LIBoxCell, IAFCell, Linear and Conv2d only; LIF, LIFRecurrentCell, LICell, "
                "LIFAdExCell, LSNNCell and the others become None): use a cell it maps "
                "(docs/frameworks/norse.md)",
    "NIRGraph": "a nested graph is not deployed: write a recurrent layer flat, as a CubaLIF or LIF with "
                "one Affine/Linear edge from it back onto itself",
}
NEURONS = ("CubaLIF", "LIF", "IF")
# snnTorch 1.0 Synaptic/RSynaptic/RLeaky, reset_mechanism="zero", reset_delay=True (the default):
# snntorch/_neurons/synaptic.py _base_zero: mem[t] = (beta mem[t-1] + syn[t]) (1 - r[t]), with
# r[t] = mem[t-1] > threshold and syn[t] = alpha syn[t-1] + x[t] not reset (rsynaptic.py the
# same, rleaky.py: mem[t] = (beta mem[t-1] + x[t] + V s[t-1]) (1 - r[t])); Leaky's
# (leaky.py) zeroes mem[t-1] only, and reset_delay=False zeroes mem at the spike: both Loihi's.
DELAYED_RESET = ("snnTorch's Synaptic, RSynaptic and RLeaky with reset_mechanism=\"zero\" and reset_delay=True "
                 "(their default) zero the membrane and that step's input on the step after a spike (they "
                 "cannot spike twice in a row); Loihi's neuron here resets v to 0 at the spike and "
                 "integrates the next step's input, so spikes differ.")
# dt/tau within this relative distance of 1 is tau = dt. float32 holds a number to 2**-24
# (6e-8) relative, so a tau written in float32 (snnTorch's Leaky(beta=0) for dt = 1e-4:
# tau = 9.99999975e-05 in float64) is tau = dt; 1e-6 leaves room for a few such roundings
# and is far below the decay grid (1/4096 = 2.4e-4).
REL_TOL = 1e-6
# Decays Loihi's registers hold (1/4096 per step; hw_targets/loihi.py, HARDWARE.md section 1):
# i_decay = du + 1 with du 0..4095, v_decay = dv 0..4095.
I_DECAY_RANGE = (1, 2 ** LOIHI.decay_bits)
V_DECAY_RANGE = (0, 2 ** LOIHI.decay_bits - 1)


def _name(node) -> str:
    return type(node).__name__


def _numbers(where: str, field: str, v, allow_inf: bool = False) -> np.ndarray:
    if v is None:
        raise ModelFileError(f"{where}: field {field!r} is missing")
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    try:
        a = np.asarray(v)
    except Exception:
        raise ModelFileError(f"{where}: field {field!r} is not an array of numbers") from None
    if a.dtype.kind not in "biuf":
        raise ModelFileError(f"{where}: field {field!r} has dtype {a.dtype}, expected numbers")
    a = a.astype(np.float64)
    if np.isnan(a).any():
        raise ModelFileError(f"{where}: field {field!r} contains NaN")
    if not allow_inf and np.isinf(a).any():
        raise ModelFileError(f"{where}: field {field!r} contains Inf")
    return a


def _ints(where: str, field: str, v, n: int, lo: int) -> tuple[int, ...]:
    a = _numbers(where, field, v)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,) or np.any(a != np.round(a)) or np.any(a < lo) or np.any(a > 1 << 16):
        raise ModelFileError(f"{where}: field {field!r}={a.tolist()} must be {n} integers >= {lo}")
    return tuple(int(x) for x in a)


def _shape(where: str, field: str, v) -> tuple[int, ...]:
    a = _numbers(where, field, v)
    if a.ndim != 1 or a.size == 0 or np.any(a != np.round(a)) or np.any(a < 1) or np.any(a > 1 << 20):
        raise ModelFileError(f"{where}: field {field!r}={np.asarray(v).tolist()} is not a shape of positive integers")
    return tuple(int(x) for x in a)


def _per_neuron(where: str, field: str, v, out_shape: tuple[int, ...], kind: str,
                allow_inf: bool = False) -> np.ndarray:
    """A neuron parameter as an array of out_shape (scalar, per channel for conv, or full)."""
    a = _numbers(where, field, v, allow_inf)
    n = int(np.prod(out_shape))
    if a.size == 1:
        return np.full(out_shape, float(a.reshape(-1)[0]))
    if a.size == n:
        return a.reshape(out_shape)
    if kind == "conv" and a.size == out_shape[0]:
        return np.broadcast_to(a.reshape(-1, 1, 1), out_shape).copy()
    raise ModelFileError(f"{where}: field {field!r} has shape {a.shape}, expected a scalar, "
                         f"{out_shape}" + (f" or ({out_shape[0]},)" if kind == "conv" else ""))


def _per_channel(where: str, field: str, a: np.ndarray, kind: str) -> np.ndarray:
    """(n,) for dense, (C,) for conv; a conv parameter must be constant within a channel."""
    if kind != "conv":
        return a.reshape(-1)
    flat = a.reshape(a.shape[0], -1)
    if np.any(flat != flat[:, :1]):
        raise UnsupportedLayerError(f"{where}: field {field!r} differs within an output channel; "
                                    "a conv layer takes one value per channel")
    return flat[:, 0].copy()


def _prescan(path: Path) -> None:
    """Refuse oversized files before anything is decoded (a .nir is untrusted)."""
    count = {"nodes": 0, "elements": 0}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            count["elements"] += int(obj.size)
            if count["elements"] > MAX_ELEMENTS:
                raise ModelFileError(f"{path}: more than {MAX_ELEMENTS} numbers in the file; refusing")
        elif name.count("/") == 2 and name.startswith("node/nodes/"):
            count["nodes"] += 1
            if count["nodes"] > MAX_NODES:
                raise ModelFileError(f"{path}: more than {MAX_NODES} nodes; refusing")

    with h5py.File(path, "r") as f:
        if "node" not in f:
            raise ModelFileError(f"{path}: not a NIR file (no 'node' group)")
        f.visititems(visit)


def read(path: str | Path):
    """Read a .nir file as untrusted input; every failure is a one-line ModelFileError."""
    import nir
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such NIR file")
    try:
        _prescan(path)
        return nir.read(str(path), type_check=False)
    except ModelFileError:
        raise
    except Exception as e:  # h5py / nir raise many types on corrupt or foreign files
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ModelFileError(f"{path}: not a readable NIR file ({type(e).__name__}: {msg})") from None


def _chain(graph, where: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The nodes from Input to Output, in order, and the recurrent loops taken out of the
    graph first: {spiking node: (Affine/Linear loop node, node it feeds)} (module docstring).
    Raises UnsupportedLayerError naming the node for anything else."""
    import nir
    nodes = graph.nodes
    if not isinstance(nodes, dict) or not nodes:
        raise ModelFileError(f"{where}: graph has no nodes")
    edges = []
    for e in graph.edges:
        if not (isinstance(e, (tuple, list)) and len(e) == 2 and all(isinstance(x, str) for x in e)):
            raise ModelFileError(f"{where}: edge {e!r} is not a pair of node names")
        for x in e:
            if x not in nodes:
                raise ModelFileError(f"{where}: edge {tuple(e)} names unknown node {x!r}")
        edges.append(tuple(e))
    feeds_neuron = {a for a, b in edges if _name(nodes[b]) in ("IF", "LIF")}
    for k, n in nodes.items():
        kind = _name(n)
        if kind == "LI" and k in feeds_neuron:
            continue            # the synaptic current of an IF or LIF (exporters/nir.py, v_decay 0)
        if kind not in SUPPORTED:
            why = WHY.get(kind, f"not supported; supported nodes: {', '.join(SUPPORTED)}")
            raise UnsupportedLayerError(f"{where}: node {k!r} ({kind}): {why}")
    ins = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise UnsupportedLayerError(f"{where}: {len(ins)} Input and {len(outs)} Output nodes; "
                                    "exactly one of each deploys")
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
    loops: dict[str, tuple[str, str]] = {}
    for k, n in nodes.items():   # X -> R -> X, or X -> R -> LI -> X: a recurrent layer's loop
        if _name(n) not in ("Affine", "Linear") or len(pred[k]) != 1 or len(succ[k]) != 1:
            continue
        src, dst = pred[k][0], succ[k][0]
        if _name(nodes[src]) in NEURONS and (dst == src or (_name(nodes[dst]) == "LI" and succ[dst] == [src])):
            if src in loops:
                raise UnsupportedLayerError(f"{where}: node {src!r} has two recurrent loops ({loops[src][0]!r}, "
                                            f"{k!r}); one deploys: add their weights into one matrix")
            loops[src] = (k, dst)
    for x, (k, dst) in loops.items():
        succ[x].remove(k)
        pred[dst].remove(k)
        del succ[k], pred[k]
    for k in succ:
        if len(succ[k]) > 1 or len(pred[k]) > 1:
            raise UnsupportedLayerError(
                f"{where}: node {k!r} has {len(pred[k])} inputs and {len(succ[k])} outputs; only a "
                "chain deploys (no branches or skip connections; recurrence only as one Affine/Linear "
                "loop from a CubaLIF/LIF back onto itself)")
    order, k = [ins[0]], ins[0]
    while k != outs[0]:
        if not succ[k]:
            raise UnsupportedLayerError(f"{where}: node {k!r} leads nowhere (no path to the Output)")
        k = succ[k][0]
        if k in order:
            raise UnsupportedLayerError(f"{where}: node {k!r} closes a cycle; recurrence deploys only as "
                                        "one Affine/Linear loop from a CubaLIF/LIF back onto itself")
        order.append(k)
    left = sorted(set(succ) - set(order))
    if left:
        raise UnsupportedLayerError(f"{where}: node(s) {', '.join(map(repr, left))} not on the path "
                                    "from Input to Output")
    return order, loops


def _regulation(node, where: str) -> tuple[bool, float | None]:
    """Layer.regulated and Layer.train_rate from a spiking node's metadata: "regulated" (0 or
    1) and "train_rate" (spikes per neuron per step in [0, 1], NaN: unknown), as
    exporters/nir.py and ahsar_deploy/regulate.py annotate_nir write them. Absent: (False,
    None). Untrusted: anything else is a one-line ModelFileError."""
    meta = node.metadata if isinstance(getattr(node, "metadata", None), dict) else {}
    out = []
    for key, default in (("regulated", 0), ("train_rate", np.nan)):
        v = meta.get(key, default)
        if isinstance(v, np.ndarray) and v.size == 1:      # HDF5 gives scalars back as arrays
            v = v.reshape(-1)[0]
        ok = isinstance(v, (int, float, np.integer, np.floating, np.bool_))
        if key == "regulated" and ok and v in (0, 1):
            out.append(bool(v))
        elif key == "train_rate" and ok and not isinstance(v, (bool, np.bool_)) and (np.isnan(v) or 0 <= v <= 1):
            out.append(None if np.isnan(v) else float(v))
        else:
            want = "0 or 1" if key == "regulated" else "a firing rate in [0, 1] (spikes per neuron per step) or NaN"
            raise ModelFileError(f"{where}: metadata {key!r} is {str(v)[:40]!r}, expected {want}; fix or remove it")
    return out[0], out[1]


def _pool_kernel(node, where: str, shape) -> int:
    if len(shape) != 3:
        raise UnsupportedLayerError(f"{where}: pooling needs a (C, H, W) input, got {shape}")
    k = _ints(where, "kernel_size", node.kernel_size, 2, 1)
    s = _ints(where, "stride", node.stride if node.stride is not None else node.kernel_size, 2, 1)
    p = _ints(where, "padding", node.padding if node.padding is not None else 0, 2, 0)
    if k[0] != k[1] or s != k or p != (0, 0):
        raise UnsupportedLayerError(f"{where}: pooling kernel {k}, stride {s}, padding {p}; only square "
                                    "kernels with stride = kernel and no padding fuse into the next layer")
    if shape[1] < k[0] or shape[2] < k[0]:
        raise ModelFileError(f"{where}: pooling kernel {k[0]} larger than its input {shape}")
    return k[0]


def _conv(node, where: str, shape) -> tuple[np.ndarray, tuple, tuple]:
    if len(shape) != 3:
        raise UnsupportedLayerError(f"{where}: Conv2d needs a (C, H, W) input, got {shape}")
    w = _numbers(where, "weight", node.weight)
    if w.ndim != 4 or w.shape[1] != shape[0] or min(w.shape) < 1:
        raise ModelFileError(f"{where}: field 'weight' has shape {w.shape}, expected (C_out, {shape[0]}, kh, kw)")
    if _ints(where, "groups", node.groups, 1, 1) != (1,):
        raise UnsupportedLayerError(f"{where}: groups={node.groups}; only groups=1 deploys")
    if _ints(where, "dilation", node.dilation, 2, 1) != (1, 1):
        raise UnsupportedLayerError(f"{where}: dilation={node.dilation}; only dilation 1 deploys")
    stride = _ints(where, "stride", node.stride, 2, 1)
    pad = node.padding
    if isinstance(pad, (str, bytes)):
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad == "valid":
            padding = (0, 0)
        elif pad == "same" and stride == (1, 1) and w.shape[2] % 2 and w.shape[3] % 2:
            padding = (w.shape[2] // 2, w.shape[3] // 2)
        else:
            raise UnsupportedLayerError(f"{where}: padding {pad!r} with kernel {w.shape[2:]} and stride "
                                        f"{stride}; use integer padding")
    else:
        padding = _ints(where, "padding", pad, 2, 0)
    if node.input_shape is not None:
        hw = _ints(where, "input_shape", node.input_shape, 2, 1)
        if hw != tuple(shape[1:]):
            raise ModelFileError(f"{where}: field 'input_shape'={hw} but its input is {shape}")
    bias = node.bias
    if bias is not None and np.any(_numbers(where, "bias", bias) != 0):
        raise UnsupportedLayerError(f"{where}: non-zero bias on a convolution; biases deploy on dense layers "
                                    "only (netx holds one per channel): retrain the convolution without bias")
    out_hw = conv_out_hw(shape[1:], w.shape[2:], stride, padding)
    if min(out_hw) < 1:
        raise ModelFileError(f"{where}: kernel {w.shape[2:]} larger than its padded input {shape}")
    return w, stride, padding


def _decay(where: str, field: str, tau: np.ndarray, dt: float, norse_dt: float | None, name: str,
           legal: tuple[int, int], notes: list, norse_hint: bool = True) -> tuple[float, int]:
    """dt/tau (1 when within REL_TOL of it) and the deployed decay: 4096 dt/tau rounded to the
    nearest integer in `legal` (Loihi's register range, in 1/4096 per step). A decay moved
    by more than that rounding is logged and appended to notes. tau in s, or, with norse_dt
    (s, the dt norse's to_nir used), as written by norse 1.1: norse_dt * tau.
    norse_hint: suggest --nir-tau norse where it would deploy (False: snnTorch wrote it)."""
    if np.any(tau <= 0):
        raise ModelFileError(f"{where}: field {field!r} must be > 0 s")
    if norse_dt is not None:
        tau = tau / norse_dt
    if np.any(np.isinf(tau)):
        raise UnsupportedLayerError(f"{where}: {field}=inf: in NIR's ODE this neuron receives no input")
    a = dt / tau
    a = np.where(np.abs(a - 1) <= REL_TOL, 1.0, a)          # tau = dt, stored in float32 or not
    t = float(tau.min())
    if np.any(a > 1):
        if norse_dt is not None:
            fix = "pass a smaller --dt"
        else:
            short = f"{t:.6g}"          # 6 digits unless that rounds above tau + REL_TOL
            fix = f"pass --dt {short if float(short) <= t * (1 + REL_TOL) else f'{t:.9g}'} or smaller"
            # norse 1.1 to_nir stores dt_w*tau (dt_w = 1e-3 by default): named only when reading
            # tau that way gives tau >= dt and a decay of at least 1/4096 (tau <= 4096 dt)
            if norse_hint and dt <= t / NORSE_TO_NIR_DT <= 4096 * dt:
                fix += "; or, if norse 1.1's to_nir wrote this graph (it stores dt*tau), pass --nir-tau norse"
        raise UnsupportedLayerError(
            f"{where}: {field}={t:.6g} s < dt={dt:.6g} s (dt/{field}={dt / t:.9g} > 1): forward Euler "
            f"at this dt overshoots (a decay above 4096/4096 per step, which Loihi cannot hold); {fix}")
    exact = 4096 * a
    d = np.clip(np.rint(exact), *legal).astype(np.int64)
    if np.any(d != d.reshape(-1)[0]):
        raise UnsupportedLayerError(f"{where}: {field} differs across neurons (decays "
                                    f"{sorted(set(d.reshape(-1).tolist()))[:4]}...); one decay per layer deploys")
    d0, e0 = int(d.reshape(-1)[0]), float(exact.reshape(-1)[0])
    if abs(d0 - e0) > 0.5:
        note = (f"{field}={t:.6g} s at dt={dt:.6g} s: exact {name} {e0:.6g} is outside Loihi's "
                f"{legal[0]}..{legal[1]}; deployed {d0}, the nearest legal value"
                + (" (tau = dt: a memoryless membrane; v now keeps 1/4096 of itself per step)"
                   if name == "v_decay" and e0 == 4096 else ""))
        log.warning("warning: %s: %s", where, note)
        notes.append(note)
    return float(a.reshape(-1)[0]), d0


def _neuron(node, where: str, out_shape, kind: str, dt: float, norse_dt: float | None,
            li: tuple | None = None, norse_hint: bool = True) -> dict:
    """Decays, per-neuron gain and thresholds of a NIR neuron (see the module docstring).
    li: (LI node, where) before an IF or LIF: the layer's synaptic current."""
    ntype = _name(node)
    p = lambda f, inf=False: _per_neuron(where, f, getattr(node, f), out_shape, kind, inf)  # noqa: E731
    r = p("r")
    th = p("v_threshold")
    v_reset = node.v_reset if getattr(node, "v_reset", None) is not None else 0.0
    if np.any(_per_neuron(where, "v_reset", v_reset, out_shape, kind) != 0):
        raise UnsupportedLayerError(f"{where}: v_reset != 0; Loihi resets v to 0")
    v_leak = np.zeros(out_shape) if ntype == "IF" else p("v_leak")
    if np.any(r <= 0):
        raise UnsupportedLayerError(f"{where}: field 'r' must be > 0")
    if np.any(th <= 0):
        raise UnsupportedLayerError(f"{where}: field 'v_threshold' must be > 0")
    notes: list[str] = []

    def decay(field: str, name: str, legal: tuple[int, int]) -> tuple[float, int]:
        return _decay(where, field, p(field, inf=True), dt, norse_dt, name, legal, notes, norse_hint)

    info = {"node_type": ntype}
    if ntype == "CubaLIF":
        a_i, i_decay = decay("tau_syn", "i_decay", I_DECAY_RANGE)
        a_v, v_decay = decay("tau_mem", "v_decay", V_DECAY_RANGE)
        w_in = p("w_in")
        if np.any(w_in <= 0):
            raise UnsupportedLayerError(f"{where}: field 'w_in' must be > 0")
        # norse's LIFCell (lif_feed_forward_step) adds its input to the current unscaled,
        # i <- i + W x, where NIR's CubaLIF adds dt/tau_syn w_in W x: no a_i under norse
        gain = a_v * r * w_in if norse_dt is not None else a_v * r * a_i * w_in
        info.update(a_i=a_i, a_v=a_v)
    elif ntype == "LIF":
        a_v, v_decay = decay("tau", "v_decay", V_DECAY_RANGE)
        i_decay, gain = 4096, a_v * r
        info.update(a_v=a_v)
    else:  # IF
        i_decay, v_decay, gain = 4096, 0, r
    if li is not None:          # LI -> IF/LIF: the LI is the current u (i_decay), gain (dt/tau) r
        li_node, li_where = li
        q = lambda f, inf=False: _per_neuron(li_where, f, getattr(li_node, f), out_shape, kind, inf)  # noqa: E731
        if np.any(q("v_leak") != 0):
            raise UnsupportedLayerError(f"{li_where}: v_leak != 0 of the LI feeds the synaptic current, which "
                                        "filters it; Loihi's bias is added to v: move it to the IF/LIF "
                                        "(LIF v_leak) or remove it")
        r_li = q("r")
        if np.any(r_li <= 0):
            raise UnsupportedLayerError(f"{li_where}: field 'r' must be > 0")
        a_i, i_decay = _decay(li_where, "tau", q("tau", inf=True), dt, norse_dt, "i_decay", I_DECAY_RANGE,
                              notes, norse_hint)
        gain = gain * a_i * r_li
        info.update(a_i=a_i, node_type=f"LI+{ntype}")
    if np.any(v_leak != 0) and kind == "conv":
        raise UnsupportedLayerError(f"{where}: v_leak != 0 on a conv layer: biases deploy on dense layers only")
    info.update(i_decay=i_decay, v_decay=v_decay, notes=notes,
                v_bias=v_leak.reshape(-1) * info.get("a_v", 0.0),   # (dt/tau_mem) v_leak: Loihi's v-bias
                gain=_per_channel(where, "r/w_in/tau", gain, kind),
                threshold=_per_channel(where, "v_threshold", th, kind))
    return info


def _norse_dt(tau_convention) -> float | None:
    """None for tau in seconds; for "norse" / "norse:DT" the dt (s) norse's to_nir wrote with."""
    if tau_convention == "seconds":
        return None
    if tau_convention == "norse":
        return NORSE_TO_NIR_DT
    if isinstance(tau_convention, str) and tau_convention.startswith("norse:"):
        try:
            v = float(tau_convention[6:])
        except ValueError:
            v = float("nan")
        if np.isfinite(v) and 0 < v <= 1:
            return v
    raise ModelFileError(f"tau convention {tau_convention!r}: choose one of seconds, norse (to_nir's "
                         "default dt 1e-3 s) or norse:DT (the dt in s to_nir was called with)")


def _written_dt(graph, order: list[str], where: str) -> tuple[float, str] | None:
    """(dt_g in s, the first node showing it) when every r != 1 and w_in != 1 of the chain's
    LIF, CubaLIF and LI nodes is tau/dt_g for one dt_g (relative spread <= REL_TOL), as
    snnTorch's export_to_nir (dt_g = 1e-4) and exporters/nir.py (2**-10) write them;
    else None. Fields are checked again, with shapes, when the layer is read."""
    pairs = {"LIF": (("tau", "r"),), "LI": (("tau", "r"),), "CubaLIF": (("tau_mem", "r"), ("tau_syn", "w_in"))}
    ratios, first = [], None
    for k in order:
        node = graph.nodes[k]
        for ft, fg in pairs.get(_name(node), ()):
            at = f"node {k!r} ({_name(node)})"
            tau = _numbers(f"{where}: {at}", ft, getattr(node, ft), allow_inf=True)
            gain = _numbers(f"{where}: {at}", fg, getattr(node, fg), allow_inf=True)
            if tau.size != gain.size and min(tau.size, gain.size) != 1:
                continue
            with np.errstate(all="ignore"):
                q = (tau.reshape(-1) / gain.reshape(-1))
                g = np.broadcast_to(gain.reshape(-1), q.shape)
            q = q[np.isfinite(q) & (q > 0) & (np.abs(g - 1) > REL_TOL)]
            if q.size:
                ratios.append(q)
                first = first or f"{at}: {fg} = {ft}/dt"
    if not ratios:
        return None
    q = np.concatenate(ratios)
    lo, hi = float(q.min()), float(q.max())
    if hi > lo * (1 + REL_TOL):
        return None                       # r is a gain of its own, not tau/dt
    dt_g = float(np.median(q))
    short = float(f"{dt_g:.7g}")          # 1e-4 written through float32 -> 1e-4; 2**-10 stays exact
    return (short if abs(short / dt_g - 1) <= REL_TOL else dt_g), first


def _choose_dt(dt_s, norse_dt: float | None, written: tuple[float, str] | None,
               where: str) -> tuple[float, str, list[str]]:
    """The dt (s) to deploy at, where it came from, and notes to log. dt_s: the caller's
    (--dt, or an ahsar-deploy graph's metadata), None if not given."""
    notes = []
    if written is not None:
        dt_g, at = written
        if dt_s is None:
            return dt_g, (f"inferred from the graph: dt = {dt_g:.9g} s ({at}, with this dt in every "
                          "r != 1 and w_in != 1 of its neurons)"), notes
        if abs(dt_s / dt_g - 1) > REL_TOL:
            snn = " (snnTorch's export_to_nir writes r = tau/dt at its dt 1e-4 s)" \
                if abs(dt_g / SNNTORCH_DT - 1) <= REL_TOL else ""
            raise ModelFileError(
                f"{where}: {at}: the graph was written for dt = {dt_g:.9g} s{snn}, but dt = {dt_s:.9g} s "
                f"was given: every decay and the per-step gain (dt/tau) r would change; pass --dt "
                f"{dt_g:.9g} or omit --dt")
        return float(dt_s), f"given, and the graph's {at} agrees", notes
    if norse_dt is not None:
        how = f"to_nir's default dt {norse_dt:g} s" if norse_dt == NORSE_TO_NIR_DT \
            else f"to_nir's dt {norse_dt:g} s (norse:DT)"
        if dt_s is None:
            return norse_dt, f"{how}, from --nir-tau; a norse file does not record it", notes
        if abs(dt_s / norse_dt - 1) > REL_TOL:
            notes.append(f"tau read as written / {norse_dt:g} s ({how}; the file does not record it) and "
                         f"deployed at dt = {dt_s:g} s; if to_nir was called with dt={dt_s:g}, use "
                         f"tau_convention='norse:{dt_s:g}' (--nir-tau norse:{dt_s:g})")
        return float(dt_s), f"given; tau read with {how}", notes
    if dt_s is None:
        return DEFAULT_DT_S, f"default {DEFAULT_DT_S:g} s: the graph does not show its time step (no r = tau/dt)", notes
    return float(dt_s), "given", notes


def from_graph(graph, *, dataset: str, steps: int, dt_s: float | None = None, tau_convention: str = "seconds",
               where: str = "nir", source_sha256: str = "") -> DeployGraph:
    """A nir.NIRGraph -> float DeployGraph (thresholds as in the graph, pooling fused).
    dt_s: seconds per step; None takes the dt the graph shows (r = tau/dt), else to_nir's
    dt under a norse convention, else DEFAULT_DT_S; a dt_s the graph contradicts is refused.
    Anything malformed that the checks below do not name is still a one-line error."""
    try:
        return _from_graph(graph, dataset=dataset, steps=steps, dt_s=dt_s, tau_convention=tau_convention,
                           where=where, source_sha256=source_sha256)
    except DeployError:
        raise
    except Exception as e:  # a field of an unexpected type or structure
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise ModelFileError(f"{where}: malformed NIR graph ({type(e).__name__}: {msg})") from None


def _from_graph(graph, *, dataset, steps, dt_s, tau_convention, where, source_sha256) -> DeployGraph:
    import nir
    norse_dt = _norse_dt(tau_convention)
    if dt_s is not None and not (isinstance(dt_s, (int, float)) and np.isfinite(dt_s) and 0 < dt_s <= 1):
        raise ModelFileError(f"dt {dt_s!r} s must be in (0, 1]")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 100000:
        raise ModelFileError(f"steps {steps!r} must be an integer in 1..100000")
    if not isinstance(graph, nir.NIRGraph):
        raise ModelFileError(f"{where}: top-level node is {_name(graph)}, not a NIRGraph")
    order, loops = _chain(graph, where)
    written = None if norse_dt is not None else _written_dt(graph, order, where)
    dt_s, dt_from, notes = _choose_dt(dt_s, norse_dt, written, where)
    if norse_dt is not None:   # an assumption nothing in the file can confirm: said on the console
        log.info("%s: tau read as norse's to_nir writes it with dt = %g s, which the file does not record; "
                 "a graph written with to_nir(..., dt=DT) needs --nir-tau norse:DT (tau_convention="
                 "'norse:DT')", where, norse_dt)
    snntorch = written is not None and abs(written[0] / SNNTORCH_DT - 1) <= REL_TOL
    said = graph.metadata.get("reset") if isinstance(graph.metadata, dict) else None
    if said is not None and str(said) != "zero":
        if str(said) == "subtract":
            raise UnsupportedLayerError(f"{where}: the graph's metadata says reset \"subtract\"; Loihi resets "
                                        "v to 0 after a spike: retrain with zero reset (snnTorch "
                                        "reset_mechanism=\"zero\")")
        raise ModelFileError(f"{where}: metadata reset {str(said)[:40]!r}: the value this importer reads is "
                             "\"zero\" (or leave it out)")
    said_zero = said is not None
    delay = _reset_delay(graph.metadata.get("reset_delay") if isinstance(graph.metadata, dict) else None, where)
    # snnTorch's neurons whose reset "zero" with reset_delay=True (the default) is not Loihi's:
    # Synaptic and RSynaptic (CubaLIF) and RLeaky (a LIF with a loop); Leaky's (a LIF without one)
    # is not. RSynaptic (CubaLIF with a loop) always: its reset_delay=False resets a local variable
    # (rsynaptic.py forward: `mem = mem - do_reset * mem`), so it never takes effect.
    rsyn = [k for k in order if snntorch and _name(graph.nodes[k]) == "CubaLIF" and k in loops]
    delayed = [k for k in order if k in rsyn or (snntorch and delay is not False and (
        _name(graph.nodes[k]) == "CubaLIF" or (_name(graph.nodes[k]) == "LIF" and k in loops)))]
    if snntorch and not said_zero:
        fix = ('reset_mechanism="zero", reset_delay=False' if delayed else 'reset_mechanism="zero"')
        say = ('graph.metadata["reset"] = "zero" and graph.metadata["reset_delay"] = 0' if delayed
               else 'graph.metadata["reset"] = "zero"')
        notes.append(f"{written[1]} at dt = 1e-4 s, as snnTorch's export_to_nir writes Leaky/Synaptic: "
                     "the deployed neurons reset to zero (v <- 0 after a spike), but snnTorch's default "
                     "reset_mechanism=\"subtract\" subtracts the threshold, which NIR cannot express; "
                     "unless the network was trained with reset_mechanism=\"zero\", spikes and accuracy "
                     f"differ: train with {fix} in snnTorch, and say so with {say} before nir.write")
    elif delayed:
        nodes_said = ", ".join(f"{k!r} ({_name(graph.nodes[k])}{' with a loop' if k in loops else ''})"
                               for k in delayed)
        notes.append(f"node(s) {nodes_said}: {DELAYED_RESET} Fix: train with reset_delay=False (snnTorch then "
                     "resets at the spike, which is Loihi's neuron exactly) and say so with "
                     "graph.metadata[\"reset_delay\"] = 0 before nir.write"
                     + (f"; not for RSynaptic ({', '.join(map(repr, rsyn))}): snnTorch 1.0's RSynaptic "
                        "ignores reset_delay=False (its forward resets a local variable), so use Synaptic "
                        "or RLeaky there" if rsyn else ""))
    for note in notes:
        log.warning("warning: %s: %s", where, note)
    nodes = graph.nodes
    inp = nodes[order[0]]
    shape = _shape(f"{where}: node {order[0]!r} (Input)", "input_type", inp.input_type.get("input"))
    if len(shape) in (2, 4) and shape[0] == 1:
        shape = shape[1:]          # a batch dimension of 1 (norse to_nir with a batched sample)
    if len(shape) not in (1, 3):
        hint = ("; a (T, F) sample? trace the library's to_nir with one time step" if len(shape) == 2 else "")
        raise UnsupportedLayerError(f"{where}: input shape {shape}; (n,) or (C, H, W) deploy{hint}")
    in_shape = shape
    layers, pools, syn, report = [], [], None, []
    for k in order[1:]:
        node = nodes[k]
        nt = _name(node)
        at = f"{where}: node {k!r} ({nt})"
        meta_name = node.metadata.get("layer") if isinstance(getattr(node, "metadata", None), dict) else None
        name = meta_name if isinstance(meta_name, str) and meta_name.isprintable() and 0 < len(meta_name) <= 64 \
            and meta_name not in {l.name for l in layers} else str(k)   # ahsar-deploy's layer name, else the node's
        if nt in ("SumPool2d", "AvgPool2d"):
            if syn is not None:
                raise UnsupportedLayerError(f"{at}: pooling between a synapse and its neurons (pooling "
                                            "currents) does not deploy; pool the spikes after the neurons")
            kk = _pool_kernel(node, at, shape)
            pools.append((shape, kk, "sum" if nt == "SumPool2d" else "avg"))
            shape = (shape[0], shape[1] // kk, shape[2] // kk)
        elif nt == "Flatten":
            if syn is not None:
                raise UnsupportedLayerError(f"{at}: Flatten between a synapse and its neurons does not deploy")
            end = _ints(at, "end_dim", node.end_dim, 1, -1)[0] if node.end_dim is not None else -1
            start = _ints(at, "start_dim", node.start_dim, 1, 0)[0] if node.start_dim is not None else 0
            if start not in (0, 1) or end not in (-1, len(shape) - 1, len(shape)):
                raise UnsupportedLayerError(f"{at}: start_dim={start}, end_dim={end}; only a full flatten "
                                            "(C, H, W) -> C*H*W deploys")
            shape = (int(np.prod(shape)),)
        elif nt in ("Affine", "Linear", "Conv2d"):
            if syn is not None:
                raise UnsupportedLayerError(f"{at}: two synapse nodes in a row; fold them into one first")
            if nt == "Conv2d":
                w, stride, padding = _conv(node, at, shape)
                syn = {"kind": "conv", "weight": w, "stride": stride, "padding": padding,
                       "in_shape": shape, "name": name, "pools": pools}
                shape = (w.shape[0], *conv_out_hw(shape[1:], w.shape[2:], stride, padding))
            else:
                w = _numbers(at, "weight", node.weight)
                n_in = int(np.prod(shape))
                if w.ndim != 2 or w.shape[1] != n_in or w.shape[0] < 1:
                    raise ModelFileError(f"{at}: field 'weight' has shape {w.shape}, expected (n_out, {n_in})")
                syn = {"kind": "dense", "weight": w, "name": name, "pools": pools,
                       "const": [(at, _affine_bias(node, at, w.shape[0]))]}
                shape = (w.shape[0],)
            pools = []
        elif nt == "LI":        # _chain let it through: an IF or LIF follows
            if syn is None or "li" in syn:
                raise UnsupportedLayerError(f"{at}: an LI deploys only as the synaptic current between a "
                                            "synapse node (Linear, Affine, Conv2d) and an IF or LIF")
            syn["li"] = (node, at)
            syn["li_name"] = k
        elif nt in NEURONS:
            if syn is None:
                raise UnsupportedLayerError(f"{at}: a neuron without a synapse node before it does not deploy")
            nrn = _neuron(node, at, shape, syn["kind"], float(dt_s), norse_dt, syn.get("li"), not snntorch)
            g = nrn["gain"].reshape((-1,) + (1,) * (syn["weight"].ndim - 1))
            kw = _recurrence(nodes, k, loops.get(k), syn, shape, where)
            if syn["kind"] == "conv":
                kw = {"kind": "conv", "in_shape": syn["in_shape"], "stride": syn["stride"],
                      "padding": syn["padding"]}
            kw.update(_bias(syn, nrn, k))
            if kw.get("recurrent") is not None:
                kw["recurrent"] = kw["recurrent"] * g
            regulated, train_rate = _regulation(node, at)
            layer = Layer(name=syn["name"], weight=syn["weight"] * g, threshold=nrn["threshold"],
                          i_decay=nrn["i_decay"], v_decay=nrn["v_decay"], regulated=regulated,
                          train_rate=train_rate, **kw)
            for pshape, kk, mode in reversed(syn["pools"]):
                layer = fuse_pool(layer, pshape, kk, mode)
            layers.append(layer)
            report.append({"layer": layer.name, "neuron_node": str(k), "neuron": nrn["node_type"],
                           "recurrent_node": loops[k][0] if k in loops else None,
                           "bias": layer.bias is not None,
                           "i_decay": nrn["i_decay"], "v_decay": nrn["v_decay"],
                           "dt_over_tau_syn": nrn.get("a_i"), "dt_over_tau_mem": nrn.get("a_v"),
                           "i_decay_exact": 4096 * nrn["a_i"] if "a_i" in nrn else None,
                           "v_decay_exact": 4096 * nrn["a_v"] if "a_v" in nrn else None,
                           "decay_notes": nrn["notes"],
                           "snntorch_delayed_reset": said_zero and k in delayed,
                           "pools_fused": [[kk, mode] for _, kk, mode in syn["pools"]]})
            syn = None
        elif nt == "Output":
            if syn is not None or pools:
                raise UnsupportedLayerError(f"{at}: the Output must follow spiking neurons (found a "
                                            "synapse or pooling without neurons before it)")
        else:  # Input in the middle cannot happen (one Input, chain from it)
            raise UnsupportedLayerError(f"{at}: unexpected here")
    if not layers:
        raise UnsupportedLayerError(f"{where}: no synapse -> neuron layer to deploy")
    first = layers[0]
    if first.kind == "dense" and len(in_shape) == 3 and first.n_in != int(np.prod(in_shape)):
        raise ModelFileError(f"{where}: first layer takes {first.n_in} inputs, Input is {in_shape}")
    return DeployGraph(layers=tuple(layers), n_inputs=int(np.prod(in_shape)), steps=int(steps),
                       dataset=str(dataset), encoding="rate", method="nir-import",
                       source_sha256=source_sha256,
                       notes={"import": {"format": "nir", "dt_s": float(dt_s), "dt_from": dt_from,
                                         "tau_convention": tau_convention, "notes": notes,
                                         "input_shape": list(in_shape), "layers": report}})


def _reset_delay(v, where: str) -> bool | None:
    """graph.metadata["reset_delay"]: what the user says snnTorch's reset_delay was (0/1,
    False/True; HDF5 gives scalars back as arrays); None if absent. Raises ModelFileError."""
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0]
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_, int, np.integer)) and v in (0, 1):
        return bool(v)
    raise ModelFileError(f"{where}: metadata reset_delay {str(v)[:40]!r}: expected 0 or 1 (snnTorch's "
                         "reset_delay=False or True), or leave it out")


def _affine_bias(node, at: str, n: int) -> np.ndarray | None:
    """An Affine node's bias (n,) if non-zero, else None (Linear: None)."""
    if _name(node) != "Affine" or node.bias is None:
        return None
    c = _numbers(at, "bias", node.bias)
    if c.size == 1:
        c = np.full(n, float(c.reshape(-1)[0]))
    if c.shape != (n,):
        raise ModelFileError(f"{at}: field 'bias' has shape {c.shape}, expected ({n},)")
    return c if np.any(c != 0) else None


def _recurrence(nodes, x: str, loop: tuple[str, str] | None, syn: dict, shape, where: str) -> dict:
    """{"recurrent": R (n, n), before the layer's gain} of spiking node x's loop, or {};
    the loop's Affine bias is appended to syn["const"]. Raises UnsupportedLayerError for a
    loop on a conv layer or one that skips the layer's LI."""
    if loop is None:
        return {}
    k, entry = loop
    rat = f"{where}: node {k!r} ({_name(nodes[k])})"
    if syn["kind"] != "dense":
        raise UnsupportedLayerError(f"{rat}: a recurrent loop on a conv layer does not deploy; recurrence "
                                    "deploys on dense (Affine/Linear) layers")
    first = syn.get("li_name", x)
    if entry != first:
        raise UnsupportedLayerError(f"{rat}: the loop feeds {entry!r}, not the layer's synaptic current "
                                    f"{first!r}; feed it into {first!r}")
    n = int(shape[0])
    r = _numbers(rat, "weight", nodes[k].weight)
    if r.shape != (n, n):
        raise ModelFileError(f"{rat}: field 'weight' has shape {r.shape}, expected ({n}, {n}): the layer's "
                             "spikes back into its own neurons")
    syn["const"].append((rat, _affine_bias(nodes[k], rat, n)))
    return {"recurrent": r}


def _bias(syn: dict, nrn: dict, neuron: str) -> dict:
    """{"bias": b (n,)} in the layer's units (module docstring's rule), or {} if all zero.
    Raises UnsupportedLayerError for an Affine bias (a constant input) into a current with
    memory, and for a constant input on a conv layer (the bias check in _conv refuses it)."""
    b = np.asarray(nrn["v_bias"], dtype=np.float64)
    for where, c in syn.get("const", ()):
        if c is None:
            continue
        if nrn["i_decay"] != 4096 or nrn.get("a_i", 1.0) != 1.0:
            raise UnsupportedLayerError(
                f"{where}: a bias into a synaptic current with memory (i_decay {nrn['i_decay']}: tau_syn > dt "
                f"or an LI) is filtered by it, and Loihi's bias is added to v: use node {neuron!r}'s v_leak = "
                "bias / (dt/tau_mem) instead, or tau_syn = dt")
        b = b + nrn["gain"] * c
    return {"bias": b} if np.any(b != 0) else {}


def _own_meta(meta: dict, key: str, kind: type, path) -> object:
    """Field `key` of the metadata ahsar-deploy writes into model.nir (untrusted: any file
    can claim to come from us), as `kind`; None if absent. Raises ModelFileError."""
    if key not in meta:
        return None
    value = meta[key]
    if isinstance(value, np.ndarray) and value.size == 1:   # HDF5 gives scalars back as arrays
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    ok = isinstance(value, str) if kind is str else (
        isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        and np.isfinite(value) and (kind is float or float(value).is_integer()))
    if not ok:
        raise ModelFileError(f"{path}: metadata {key!r} is {str(value)[:40]!r}, not a valid {kind.__name__}; "
                             f"pass it on the command line (--data, --steps, --dt) or re-export the graph")
    return kind(value)


def to_graph(path: str | Path, dataset: str | None = None, steps: int | None = None,
             dt_s: float | None = None, tau_convention: str = "seconds") -> DeployGraph:
    """Import stage for a .nir file. dataset/steps/dt default to the graph's metadata when
    it was written by ahsar-deploy; otherwise dataset and steps must be given, and dt (s)
    comes from the graph where it shows it (from_graph)."""
    from ahsar_deploy.checkpoint import sha256
    g = read(path)
    meta = g.metadata if isinstance(g.metadata, dict) else {}
    ours = meta.get("producer") == "ahsar-deploy"
    if dataset is None and ours:
        dataset = _own_meta(meta, "dataset", str, path)
    if steps is None and ours:
        steps = _own_meta(meta, "steps", int, path)
    if dt_s is None and ours:
        dt_s = _own_meta(meta, "dt_s", float, path)     # else None: from_graph infers or defaults
    if dataset is None or steps is None:
        raise ModelFileError(f"{path}: a NIR graph carries no dataset or time steps; pass --data and --steps "
                             "for calibration (or --calib; spike data set the steps themselves)")
    return from_graph(g, dataset=dataset, steps=steps, dt_s=dt_s, tau_convention=tau_convention,
                      where=str(path), source_sha256=sha256(path))


def describe(path, dt_s: float | None = None, tau_convention: str = "seconds") -> dict:
    """How a .nir file (or an in-memory nir.NIRGraph) would deploy, without data: layers,
    shapes, decays, thresholds. Raises the same one-line errors as an export for what does
    not deploy."""
    import nir
    g = path if isinstance(path, nir.NIRGraph) else read(path)
    if g is path:
        path = "NIR graph (in memory)"
    meta = g.metadata if isinstance(g.metadata, dict) else {}
    if dt_s is None and meta.get("producer") == "ahsar-deploy":
        dt_s = _own_meta(meta, "dt_s", float, path)
    graph = from_graph(g, dataset="(none)", steps=1, dt_s=dt_s, tau_convention=tau_convention, where=str(path))
    imp = graph.notes["import"]
    layers = []
    for l, r in zip(graph.layers, imp["layers"]):
        th = np.asarray(l.threshold, dtype=np.float64)
        layers.append({"name": l.name, "kind": l.kind, "n_in": l.n_in, "n_out": l.n_out,
                       "out_shape": list(l.out_shape), "neuron": r["neuron"], "i_decay": l.i_decay,
                       "v_decay": l.v_decay, "threshold_min": float(th.min()), "threshold_max": float(th.max()),
                       "i_decay_exact": r["i_decay_exact"], "v_decay_exact": r["v_decay_exact"],
                       "decay_notes": r["decay_notes"], "pools_fused": r["pools_fused"],
                       "regulated": l.regulated, "train_rate": l.train_rate,
                       "recurrent": l.recurrent is not None, "bias": l.bias is not None,
                       **({"in_shape": list(l.in_shape), "kernel": list(l.weight.shape[2:]),
                           "stride": list(l.stride), "padding": list(l.padding)} if l.kind == "conv" else {})})
    return {"path": str(path), "producer": str(meta.get("producer", "unknown")), "dt_s": imp["dt_s"],
            "dt_from": imp["dt_from"], "import_notes": imp["notes"], "tau_convention": tau_convention,
            "input_shape": imp["input_shape"],
            "n_inputs": graph.n_inputs, "layers": layers}
