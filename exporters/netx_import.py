"""netx import: a lava-dl netx network (.net, HDF5) -> quantized DeployGraph (untrusted input).

The file is read with h5py only (never unpickled), as lava-dl's netx reads it
(lava-dl src/lava/lib/dl/netx/hdf5.py Network._create, create_dense, create_conv,
get_neuron_params; netx/utils.py NetDict, optimize_weight_bits; ../shared/HARDWARE.md
section 2), and every layer is mapped to what netx builds in Lava, so that the emulator
(ahsar_deploy/emulator.py layer_int) gives Lava's spikes bit for bit:

    layer/{i}/type "input"    shape only -> DeployGraph.n_inputs (and a conv's in_shape)
    layer/{i}/type "flatten"  -> nothing (netx flattens (C, H, W) in torch order: the IR's)
    layer/{i}/type "dense"    weight (n_out, n_in) [or (n_out*n_in,)] -> Layer kind "dense"
    layer/{i}/type "conv"     weight (C_out, C_in, kH, kW[, 1]), stride/padding (H, W)
                              -> Layer kind "conv", in_shape (C, H, W) of its input
    neuron/type CUBA or LOIHI: vThMant -> vth, iDecay -> i_decay (Lava du = iDecay - 1),
                              vDecay -> v_decay (Lava dv); refDelay is ignored (netx does)
    a dense layer without a neuron group gets netx's default: iDecay 0, vDecay 4096,
    vThMant 1 << 18 - 1 (== 1 << 17, Python precedence), which never fires.

Each layer gets threshold = vth (per channel), weight_exp 0 and scale 1.0: the graph's
float view is the integer model itself. Weights are the file's integers exactly:
- dense: netx re-derives an exponent and mantissa width (optimize_weight_bits) and Lava's
  Dense then clips and truncates (lava-nc src/lava/proc/dense/models.py
  AbstractPyDenseModelBitAcc, src/lava/utils/weightutils.py clip_weights,
  truncate_weights). That is exact for most integer matrices in [-256, 255], odd weights
  included (netx then uses up to 9 mantissa bits), but not for all. Where no weight is
  positive, Lava clips the shifted weights to [-255, 0]: -256 loses low bits (-255, -254 or
  -252 by the matrix's grid), -128 beside a 0 (which netx doubles) runs as -127, and a 0
  beside odd weights below -128 makes every weight 0. A mixed-sign 255 is clipped to 254;
  an all-zero matrix makes netx fail. lava_dense_weights() computes what Lava runs; a layer
  whose weights Lava would change is refused, naming the first such weight.
- conv: Lava's fixed-point conv uses the integers as they are (lava/proc/conv/models.py);
  integers in [-256, 255] are accepted while every channel's summed |kernel| stays below
  2**24 (Lava sums in float32).

Refused, each in one line naming the file, the layer index, the field and what deploys
(UnsupportedLayerError; ModelFileError for a malformed or oversized file): an input layer
with a neuron group (netx builds a LIF Input block fed only through its bias: binary
spikes sent to the network never reach it, and Lava fails to compile such a network;
skip_input_neuron=True drops it, as netx's Network(skip_layers=1) does) or with a
transform other than netx's default (weight 64, bias 0); non-zero bias; delay; graded
spikes (gradedSpike true, messageBits > 0); SDNN (sigma-delta) and RF neurons; dense_rec,
dense_comp and weight/real|imag; groups != 1; dilation != 1; pool, convT, unpool, average,
concat (netx raises NotImplementedError) and unknown layer types (netx skips them
silently); non-integer weights (netx truncates them toward zero); per-neuron decays or
thresholds that differ; a flatten not followed by a dense layer.

Lava's timing (exporters/lava.py): netx's Network builds one block per dense/conv layer
(input and flatten add none), so layer i's spikes for sample k, step tau appear at Lava
time kT + tau + 2 + i, as for the builds this toolchain writes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NoReturn

import h5py
import numpy as np

from ahsar_deploy.errors import ModelFileError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer, conv_out_hw

MAX_LAYERS = 1000
MAX_OBJECTS = 50_000            # groups and datasets in the file
MAX_ELEMENTS = 1 << 26          # numbers in all datasets together (float64: 512 MiB)
MAX_NEURONS = 1 << 24           # per layer (input, dense or conv output)
MAX_DEPTH = 6                   # layer/{i}/neuron/{key} is depth 4
MAX_STEPS = 100_000
NEURON_TYPES = ("CUBA", "LOIHI")
# netx hdf5.py create_dense: a dense layer without a neuron group ("Non-leaky integrator")
DEFAULT_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": 4096, "vThMant": 1 << 18 - 1}
NOT_IMPLEMENTED = ("pool", "convT", "unpool", "average", "concat")   # netx raises NotImplementedError
IGNORED_FIELDS = {                 # written by slayer, never read by netx
    "dense": ("inFeatures", "outFeatures"),
    "conv": ("inChannels", "outChannels", "kernelSize"),
    "flatten": ("shape",),
    "input": (),
}
DEPLOYS = ("deploys: input (shape only), flatten, dense and conv layers with a CUBA/LOIHI neuron, "
           "binary spikes, integer weights Lava runs exactly, no bias or delay")


def _fail(where: str, i: int | None, ltype: str | None, field: str | None, what: str,
          cls: type = UnsupportedLayerError, deploys: bool = True) -> NoReturn:
    """Raise cls with one line: file, layer index (and type), field, what, what deploys."""
    at = "" if i is None else f" layer {i}" + (f" ({ltype!s:.20})" if ltype else "")
    fld = f" field {field!r}" if field else ""
    tail = f"; {DEPLOYS}" if deploys else ""
    raise cls(" ".join(f"{where}:{at}{fld}: {what}{tail}".split()))   # names from the file stay one line


# --------------------------------------------------------------------------- file access

def _prescan(f: h5py.File, where: str) -> int:
    """Refuse links, external or virtual storage, odd dtypes and oversized files before any
    data is read. Returns the number of numbers in the file."""
    count = {"objects": 0, "elements": 0}

    def walk(group: h5py.Group, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            _fail(where, None, None, None, f"{prefix} nests deeper than {MAX_DEPTH} levels; "
                  "not a netx network", ModelFileError, False)
        for name in group:
            path = f"{prefix}{name}"[:80]
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                _fail(where, None, None, None, f"{path} is a {type(link).__name__}; a netx file "
                      "holds no links to other objects or files", ModelFileError, False)
            count["objects"] += 1
            if count["objects"] > MAX_OBJECTS:
                _fail(where, None, None, None, f"more than {MAX_OBJECTS} objects; refusing",
                      ModelFileError, False)
            obj = group[name]
            if isinstance(obj, h5py.Group):
                walk(obj, path + "/", depth + 1)
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual or obj.external:
                    _fail(where, None, None, None, f"{path} keeps its data outside the file "
                          "(virtual or external storage); refusing", ModelFileError, False)
                dt = obj.dtype
                if not (dt.kind in "biuf" or h5py.check_string_dtype(dt) is not None):
                    _fail(where, None, None, None, f"{path} has dtype {dt}; a netx file holds "
                          "numbers and strings only", ModelFileError, False)
                count["elements"] += int(obj.size)
                if count["elements"] > MAX_ELEMENTS:
                    _fail(where, None, None, None, f"more than {MAX_ELEMENTS} numbers; refusing",
                          ModelFileError, False)
            else:
                _fail(where, None, None, None, f"{path} is a {type(obj).__name__}; not a netx "
                      "network", ModelFileError, False)

    walk(f, "", 1)
    return count["elements"]


def _string(g: h5py.Group, key: str, where: str, i: int, ltype: str | None,
            label: str | None = None) -> str:
    """A netx string field: S10 (1,) as slayer writes 'type', or a scalar string (NetDict)."""
    key_label = label or key
    ds = g.get(key)
    if not isinstance(ds, h5py.Dataset) or ds.size != 1 or ds.ndim > 1:
        _fail(where, i, ltype, key_label, "missing or not one string", ModelFileError, False)
    v = ds[()]
    v = v.reshape(-1)[0] if isinstance(v, np.ndarray) else v
    if isinstance(v, bytes):
        try:
            v = v.decode("ascii")
        except UnicodeDecodeError:
            _fail(where, i, ltype, key_label, "is not ASCII", ModelFileError, False)
    if not isinstance(v, str):
        _fail(where, i, ltype, key_label, f"is a {type(v).__name__}, not a string", ModelFileError, False)
    return v[:40]


def _array(g: h5py.Group, key: str, where: str, i: int, ltype: str, kinds: str = "iuf",
           label: str | None = None) -> np.ndarray:
    """A numeric dataset g[key] as an array; label names it in errors (default key)."""
    label = label or key
    ds = g.get(key)
    if not isinstance(ds, h5py.Dataset):
        _fail(where, i, ltype, label, "missing (netx requires it)" if ds is None else
              "is a group, expected numbers", ModelFileError, False)
    if ds.dtype.kind not in kinds:
        want = {"iu": "integers", "biu": "a boolean or integer"}.get(kinds, "numbers")
        _fail(where, i, ltype, label, f"has dtype {ds.dtype}, expected {want}", ModelFileError, False)
    a = np.asarray(ds[()])
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        _fail(where, i, ltype, label, "contains NaN or Inf", ModelFileError, False)
    return a


def _integers(a: np.ndarray, where: str, i: int, ltype: str, key: str, why: str) -> np.ndarray:
    """Integer-valued numbers as int64 (netx's NetDict casts with astype(int), truncating)."""
    if a.dtype.kind == "f":
        flat = a.reshape(-1)
        k = np.flatnonzero(flat != np.trunc(flat))
        if k.size:
            _fail(where, i, ltype, key, f"value {float(flat[k[0]]):g} is not an integer ({why})")
        if np.any(np.abs(flat) > 2 ** 31):
            _fail(where, i, ltype, key, f"value {float(flat[np.argmax(np.abs(flat))]):g} is beyond int32",
                  ModelFileError, False)
    return a.astype(np.int64)


def _scalar_int(g: h5py.Group, key: str, where: str, i: int, ltype: str, lo: int, hi: int,
                meaning: str) -> int:
    """A neuron parameter: an integer dataset, one value (or all values equal: netx passes a
    per-neuron array to Lava as it is), in lo..hi."""
    label = f"neuron/{key}"
    a = _array(g, key, where, i, ltype, kinds="iu", label=label)
    if a.size == 0:
        _fail(where, i, ltype, label, "is empty", ModelFileError, False)
    flat = a.reshape(-1)
    if np.any(flat != flat[0]):
        _fail(where, i, ltype, label, f"per-neuron values differ ({int(flat.min())}..{int(flat.max())}); "
              "a layer deploys one value")
    v = int(flat[0])
    if not lo <= v <= hi:
        _fail(where, i, ltype, label, f"{v} outside {lo}..{hi} ({meaning})")
    return v


def _pair(g: h5py.Group, key: str, where: str, i: int, lo: int, hi: int) -> tuple[int, int]:
    """stride / padding / dilation: a scalar or (H, W), as netx's expand() reads them."""
    a = _integers(_array(g, key, where, i, "conv", kinds="iu"), where, i, "conv", key, "")
    if a.size == 1:
        a = np.repeat(a.reshape(-1), 2)
    if a.shape != (2,):
        _fail(where, i, "conv", key, f"has shape {a.shape}, expected a scalar or (H, W)", ModelFileError, False)
    if not (lo <= a.min() and a.max() <= hi):
        _fail(where, i, "conv", key, f"{a.tolist()} outside {lo}..{hi}", ModelFileError, False)
    return int(a[0]), int(a[1])


def _shape(g: h5py.Group, where: str, i: int, ltype: str, ndims: tuple[int, ...]) -> tuple[int, ...]:
    a = _integers(_array(g, "shape", where, i, ltype, kinds="iu"), where, i, ltype, "shape", "")
    if a.ndim != 1 or a.size not in ndims or a.min(initial=1) < 1:
        _fail(where, i, ltype, "shape", f"{a.tolist()} is not {' or '.join(f'{n}-d' for n in ndims)} "
              "with positive sizes", ModelFileError, False)
    if math.prod(int(v) for v in a) > MAX_NEURONS:
        _fail(where, i, ltype, "shape", f"{a.tolist()} has more than {MAX_NEURONS} neurons; refusing",
              ModelFileError, False)
    return tuple(int(v) for v in a)


# --------------------------------------------------------------------------- weights

def lava_dense_weights(weight: np.ndarray) -> np.ndarray | None:
    """The weights Lava's Dense really applies to a netx dense layer's integer weights.

    weight: (n_out, n_in) integers, as netx's NetDict reads them (astype(int)).
    Returns W_eff (n_out, n_in) int64 with Lava's a_out == W_eff @ s for every binary s, or
    None where no such matrix exists: netx fails (an all-zero matrix: division by zero in
    optimize_weight_bits; weights outside [-256, 255]: a shift by a negative count), or the
    output is not linear in s.

    Follows, step by step: lava-dl src/lava/lib/dl/netx/utils.py optimize_weight_bits
    (clip mixed weights to [-256, 254]; sign mode; exponent -scale_bits; mantissa bits
    8 - scale_bits - n; weights << scale_bits), then lava-nc src/lava/proc/dense/models.py
    AbstractPyDenseModelBitAcc.run_spk with src/lava/utils/weightutils.py
    (determine_sign_mode on the shifted weights, clip_weights to 8 bits, truncate_weights
    by 8 - num_weight_bits + is_mixed LSBs), and a_out = sum >> scale_bits.
    tests/test_netx_import.py checks it against those functions on random matrices.
    """
    w = np.asarray(weight, dtype=np.int64)
    if w.size == 0:
        return None
    mx, mn = int(w.max()), int(w.min())
    if mx > 254 and mn < 0:
        w = np.clip(w, -256, 254)
        mx = int(w.max())
    if mn < -256 and mx > 0:
        w = np.clip(w, -256, 254)
        mn = int(w.min())
    with np.errstate(divide="ignore"):
        if mx < 0:                       # inhibitory
            signed, scale = 0, np.float64(-256) / np.float64(mn)
        elif mn >= 0:                    # excitatory
            if mx == 0:
                return None              # netx: int(inf) raises OverflowError
            signed, scale = 0, np.float64(255) / np.float64(mx)
        else:                            # mixed
            pos = np.float64(127) / np.float64(mx) if mx != 0 else np.float64(np.inf)
            signed, scale = 1, min(pos, np.float64(-128) / np.float64(mn))
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    if scale_bits < 0:
        return None                      # np.left_shift by a negative count: undefined
    w1 = w << scale_bits
    # Lava's Dense model: sign mode of the shifted weights, 8-bit clip, LSB truncation
    if w1.min() >= 0:
        mode = "excitatory"
    elif w1.max() <= 0:
        mode = "inhibitory"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    if mode == "inhibitory":
        w2 = -np.clip(-w1, 0, 255)
    else:
        w2 = np.clip(w1, -256 * mixed, 255)
    k = 8 - num_weight_bits + mixed
    if k < 0:
        # netx said mixed (a 0 beside negative weights), Lava says inhibitory: truncate_weights
        # shifts by -1, which numpy evaluates as a shift past the width: every weight is 0
        w2 = np.zeros_like(w2)
    else:
        w2 = -(((-w2) >> k) << k) if mode == "inhibitory" else (w2 >> k) << k
    if scale_bits and np.any(w2 % (1 << scale_bits)):
        return None                      # sum >> scale_bits is not linear in the spikes
    return w2 >> scale_bits


def _dense_weight(g: h5py.Group, where: str, i: int, n_out: int) -> np.ndarray:
    w = _array(g, "weight", where, i, "dense")
    if w.ndim == 1:                      # netx: weight.reshape(shape[0], -1)
        if n_out == 0 or w.size % n_out:
            _fail(where, i, "dense", "weight", f"{w.size} values do not fill {n_out} rows",
                  ModelFileError, False)
        w = w.reshape(n_out, -1)
    if w.ndim != 2 or w.shape[0] != n_out or w.shape[1] < 1:
        _fail(where, i, "dense", "weight", f"has shape {w.shape}, expected ({n_out}, n_in) for "
              f"'shape' with {n_out} neurons", ModelFileError, False)
    w = _integers(w, where, i, "dense", "weight", "netx truncates weights toward zero")
    if w.min() < -256 or w.max() > 255:
        _fail(where, i, "dense", "weight", f"values {int(w.min())}..{int(w.max())} outside "
              "[-256, 255], Loihi's 8-bit weights with sign (netx clips or fails)")
    eff = lava_dense_weights(w)
    if eff is None:
        why = ("all weights are 0: netx's optimize_weight_bits fails on it" if not w.any() else
               "Lava's Dense would not apply these weights linearly (netx optimize_weight_bits "
               "with Lava's clip and truncation)")
        _fail(where, i, "dense", "weight", why)
    if not np.array_equal(eff, w):
        r, c = (int(v[0]) for v in np.nonzero(eff != w))
        _fail(where, i, "dense", "weight", f"Lava runs weight[{r}, {c}] = {int(w[r, c])} as "
              f"{int(eff[r, c])} (netx optimize_weight_bits, then Lava's 8-bit clip and LSB "
              "truncation; a matrix without positive weights cannot hold -256, nor -128 beside 0)")
    return w


def _conv_weight(g: h5py.Group, where: str, i: int, c_out: int, c_in: int) -> np.ndarray:
    w = _array(g, "weight", where, i, "conv")
    if w.ndim == 5 and w.shape[4] == 1:  # slayer's 3-d kernel (..., 1); netx drops the last axis
        w = w.reshape(w.shape[:4])
    if w.ndim != 4 or w.shape[0] != c_out or w.shape[1] != c_in or min(w.shape) < 1:
        _fail(where, i, "conv", "weight", f"has shape {w.shape}, expected ({c_out}, {c_in}, kH, kW) "
              f"for {c_in} input and {c_out} output channels (groups 1)", ModelFileError, False)
    w = _integers(w, where, i, "conv", "weight", "netx truncates weights toward zero")
    if w.min() < -256 or w.max() > 255:
        _fail(where, i, "conv", "weight", f"values {int(w.min())}..{int(w.max())} outside [-256, 255], "
              "Loihi's 8-bit weights with sign")
    worst = int(np.abs(w).reshape(c_out, -1).sum(axis=1).max())
    if worst >= 2 ** 24:
        _fail(where, i, "conv", "weight", f"summed |kernel| {worst} >= 2**24: Lava's conv sums in "
              "float32 and is not exact there")
    return w


# --------------------------------------------------------------------------- layers

def _no_bias(g: h5py.Group, where: str, i: int, ltype: str, notes: list[str]) -> None:
    if "bias" not in g:
        return
    b = _array(g, "bias", where, i, ltype)
    if np.any(b != 0):
        _fail(where, i, ltype, "bias", f"non-zero bias ({float(b.reshape(-1)[np.flatnonzero(b)[0]]):g}); "
              "the IR has no bias (netx: bias_mant with bias_exp 6)")
    notes.append(f"layer {i}: all-zero bias ignored (no effect in Lava)")


def _neuron(g: h5py.Group | None, where: str, i: int, ltype: str) -> dict:
    """vth, i_decay, v_decay of a CUBA/LOIHI neuron group (netx get_neuron_params)."""
    if g is None:
        return {"vth": DEFAULT_NEURON["vThMant"], "i_decay": DEFAULT_NEURON["iDecay"],
                "v_decay": DEFAULT_NEURON["vDecay"], "neuron": "CUBA (netx default)", "ignored": []}
    if not isinstance(g, h5py.Group):
        _fail(where, i, ltype, "neuron", "is not a group", ModelFileError, False)
    kind = _string(g, "type", where, i, ltype, label="neuron/type")
    if kind not in NEURON_TYPES:
        what = ("sigma-delta (SDNN) neurons send graded messages" if kind == "SDNN" else
                "resonate-and-fire neurons" if "RF" in kind else
                "an unknown neuron type (netx builds no neuron for it)")
        _fail(where, i, ltype, "neuron/type", f"{kind!r}: {what}")
    if "gradedSpike" in g:
        gs = _array(g, "gradedSpike", where, i, ltype, kinds="biu", label="neuron/gradedSpike")
        if np.any(gs):
            _fail(where, i, ltype, "neuron/gradedSpike", "true: graded spikes (trained with graded "
                  "spikes; netx ignores the flag and would run binary ones)")
    if "messageBits" in g:
        mb = _array(g, "messageBits", where, i, ltype, kinds="iu", label="neuron/messageBits")
        if np.any(mb != 0):
            _fail(where, i, ltype, "neuron/messageBits", f"{int(mb.reshape(-1)[0])}: graded spikes")
    p = {"vth": _scalar_int(g, "vThMant", where, i, ltype, 0, (1 << 18) - 1,
                            "netx's vThMant; slayer writes at most 2**18 - 1"),
         "i_decay": _scalar_int(g, "iDecay", where, i, ltype, 0, 4096, "Lava du = iDecay - 1, 12 bit"),
         "v_decay": _scalar_int(g, "vDecay", where, i, ltype, 0, 4096, "Lava dv = vDecay, 12 bit"),
         "neuron": kind}
    known = ("type", "iDecay", "vDecay", "vThMant", "gradedSpike", "messageBits")
    p["ignored"] = sorted(k for k in g if k not in known)
    return p


def _layer_type(f: h5py.File, i: int, where: str) -> tuple[h5py.Group, str]:
    g = f["layer"].get(str(i))
    if not isinstance(g, h5py.Group):
        _fail(where, i, None, None, "missing: netx reads layer/0 .. layer/{n-1}", ModelFileError, False)
    return g, _string(g, "type", where, i, None)


def _plain_synapses(g: h5py.Group, where: str, i: int, t: str) -> None:
    """Refuse what a dense or conv layer may hold beyond plain weights: delays, recurrent
    or complex weights."""
    for key in ("delay", "weight_rec"):
        if key in g:
            _fail(where, i, t, key, "synaptic delays" if key == "delay" else "recurrent weights")
    if isinstance(g.get("weight"), h5py.Group):
        _fail(where, i, t, "weight", "complex weights (weight/real, weight/imag)")


def read_layers(path: str | Path, skip_input_neuron: bool = False) -> tuple[list[Layer], dict]:
    """Read a netx file into IR layers (quantized) and the import report.

    Returns (layers, info): layers as described in the module docstring; info holds
    n_inputs, input_shape (C, H, W) or (F,), tSample (the file's simulation/tSample or
    None), per-layer records (file index, type, neuron, ignored fields) and notes.
    Raises ModelFileError (not HDF5, malformed, oversized, links or external storage) and
    UnsupportedLayerError (what netx can hold but this toolchain does not deploy).
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ModelFileError(f"{where}: no such netx file")
    try:
        f = h5py.File(path, "r")
    except Exception as e:   # h5py raises OSError and others for foreign or damaged files
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise ModelFileError(f"{where}: not an HDF5 file ({msg}); expected a lava-dl netx network") from None
    try:
        with f:
            return _read(f, where, skip_input_neuron)
    except (ModelFileError, UnsupportedLayerError):
        raise
    except Exception as e:   # a damaged file can fail anywhere inside h5py
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise ModelFileError(f"{where}: damaged or unreadable netx file ({type(e).__name__}: {msg})") from None


def _read(f: h5py.File, where: str, skip_input_neuron: bool) -> tuple[list[Layer], dict]:
    _prescan(f, where)
    if not isinstance(f.get("layer"), h5py.Group):
        _fail(where, None, None, None, "no 'layer' group; not a lava-dl netx network", ModelFileError, False)
    names = set(f["layer"])
    n = len(names)
    if n > MAX_LAYERS:
        _fail(where, None, None, None, f"{n} layers, more than {MAX_LAYERS}; refusing", ModelFileError, False)
    if names != {str(i) for i in range(n)}:
        _fail(where, None, None, None, f"layer groups {sorted(names)[:6]} are not named 0..{n - 1} "
              "(netx reads them by index)", ModelFileError, False)
    notes: list[str] = []
    records: list[dict] = []
    layers: list[Layer] = []
    shape: tuple[int, ...] | None = None      # current activation shape, torch order
    input_shape: tuple[int, ...] | None = None
    prev: str | None = None                   # type of the last input/dense/conv layer
    flatten = False
    for i in range(n):
        g, t = _layer_type(f, i, where)
        rec = {"index": i, "type": t}
        if t in IGNORED_FIELDS:
            skip = set(IGNORED_FIELDS[t]) | {"type"}
            rec["ignored_fields"] = sorted(k for k in g if k in IGNORED_FIELDS[t])
        else:
            skip = {"type"}
        if t == "input":
            if i != 0:
                _fail(where, i, t, "type", "an input layer after layer 0")
            if "neuron" in g and not skip_input_neuron:
                _fail(where, i, t, "neuron", "an input layer with a neuron group: netx makes it a LIF "
                      "Input block driven only through its bias (weight/bias transform never applied), "
                      "so binary input spikes never reach it; deploys: an input layer with shape only "
                      "(skip_input_neuron=True drops it, as netx's Network(skip_layers=1))",
                      deploys=False)
            if "neuron" in g:
                rec["skipped"] = "neuron group and transform (skip_input_neuron)"
                notes.append(f"layer {i}: input neuron group and transform dropped (skip_input_neuron), "
                             "as netx's Network(..., skip_layers=1) does")
            else:
                for key, default in (("weight", 64), ("bias", 0)):
                    if key in g:
                        v = _array(g, key, where, i, t)
                        if np.any(v != default):
                            _fail(where, i, t, key, f"input transform {key} "
                                  f"{float(v.reshape(-1)[0]) if v.size else '(empty)'}; netx's default is "
                                  f"{default} and netx applies none without a neuron group, so the "
                                  "network would not see the input it was trained on")
            if "shape" in g:
                shape = input_shape = _shape(g, where, i, t, (1, 2, 3))
            extra = sorted(set(g) - {"type", "shape", "neuron", "weight", "bias"})
            prev = "input"
        elif t == "flatten":
            if prev in ("dense",):
                _fail(where, i, t, "type", "a flatten after a dense layer: netx cannot transpose its "
                      "1-d output (TransposeShapeError)")
            flatten = True
            extra = sorted(set(g) - skip)
        elif t == "dense":
            if prev == "conv" and not flatten:
                _fail(where, i, t, "type", "a dense layer right after a conv layer: netx needs a flatten "
                      "layer between them", ModelFileError, False)
            _plain_synapses(g, where, i, t)
            p = _neuron(g.get("neuron"), where, i, t)
            _no_bias(g, where, i, t, notes)
            n_out = math.prod(_shape(g, where, i, t, (1, 2, 3)))
            w = _dense_weight(g, where, i, n_out)
            n_in = w.shape[1]
            if shape is not None and math.prod(shape) != n_in:
                _fail(where, i, t, "weight", f"has {n_in} inputs, the layer before gives "
                      f"{math.prod(shape)} ({'x'.join(map(str, shape))})", ModelFileError, False)
            if input_shape is None and not layers:
                input_shape = (n_in,)
            layers.append(Layer(name=f"dense{i}", weight=w, threshold=np.full(n_out, float(p["vth"])),
                                i_decay=p["i_decay"], v_decay=p["v_decay"], kind="dense", vth=p["vth"],
                                weight_exp=0, scale=1.0))
            rec.update(neuron=p["neuron"], neuron_ignored=p["ignored"], n_in=n_in, n_out=n_out)
            if "neuron" not in g:
                rec["default_neuron"] = dict(DEFAULT_NEURON)
            shape, flatten, prev = (n_out,), False, "dense"
            extra = sorted(set(g) - skip - {"shape", "weight", "neuron", "bias"})
        elif t == "conv":
            if flatten:
                _fail(where, i, t, "type", "a flatten before a conv layer (netx ignores it; a flatten "
                      "must be followed by a dense layer)")
            if prev == "dense":
                _fail(where, i, t, "type", "a conv layer after a dense layer: netx needs a (C, H, W) "
                      "input and a dense layer's output is 1-d")
            if shape is None or len(shape) != 3:
                _fail(where, i, t, "type", "a conv layer without a (C, H, W) input: netx takes it from "
                      "the conv before or from an input layer's 3-d shape", ModelFileError, False)
            _plain_synapses(g, where, i, t)
            if "neuron" not in g:
                _fail(where, i, t, "neuron", "missing (netx requires a neuron group on a conv layer)",
                      ModelFileError, False)
            p = _neuron(g["neuron"], where, i, t)
            groups = _integers(_array(g, "groups", where, i, t, kinds="iu"), where, i, t, "groups", "")
            if groups.size != 1 or int(groups.reshape(-1)[0]) != 1:
                _fail(where, i, t, "groups", f"{groups.reshape(-1).tolist()}: grouped convolution")
            dilation = _pair(g, "dilation", where, i, 1, 1024)
            if dilation != (1, 1):
                _fail(where, i, t, "dilation", f"{list(dilation)}: dilated convolution")
            stride = _pair(g, "stride", where, i, 1, 1024)
            padding = _pair(g, "padding", where, i, 0, 1024)
            _no_bias(g, where, i, t, notes)
            out = _shape(g, where, i, t, (3,))
            w = _conv_weight(g, where, i, out[0], shape[0])
            hw = conv_out_hw(shape[1:], w.shape[2:], stride, padding)
            if (out[0], *hw) != out:
                _fail(where, i, t, "shape", f"{list(out)}, but a {w.shape[2]}x{w.shape[3]} kernel with "
                      f"stride {list(stride)} and padding {list(padding)} on {list(shape)} gives "
                      f"{[out[0], *hw]}", ModelFileError, False)
            layers.append(Layer(name=f"conv{i}", weight=w, threshold=np.full(out[0], float(p["vth"])),
                                i_decay=p["i_decay"], v_decay=p["v_decay"], kind="conv", vth=p["vth"],
                                weight_exp=0, scale=1.0, in_shape=shape, stride=stride, padding=padding))
            rec.update(neuron=p["neuron"], neuron_ignored=p["ignored"], in_shape=list(shape),
                       out_shape=list(out), stride=list(stride), padding=list(padding))
            shape, prev = out, "conv"
            extra = sorted(set(g) - skip - {"shape", "weight", "neuron", "bias", "stride", "padding",
                                            "dilation", "groups"})
        elif t in NOT_IMPLEMENTED:
            _fail(where, i, t, "type", f"{t!r} layers (netx raises NotImplementedError for them)")
        elif t in ("dense_rec", "dense_comp"):
            _fail(where, i, t, "type", "recurrent weights" if t == "dense_rec" else
                  "complex weights (weight/real, weight/imag)")
        else:
            _fail(where, i, t, "type", f"unknown layer type {t!r} (netx would skip it silently)")
        if extra:
            rec["unread_fields"] = extra
            notes.append(f"layer {i}: fields {extra} are not read by netx; ignored")
        records.append(rec)
    if not layers:
        _fail(where, None, None, None, "no dense or conv layer", UnsupportedLayerError)
    if flatten:
        notes.append("a trailing flatten layer has no effect; ignored")
    t_sample = None
    sim = f.get("simulation")
    if isinstance(sim, h5py.Group) and isinstance(sim.get("tSample"), h5py.Dataset):
        ts = np.asarray(sim["tSample"][()])
        if ts.dtype.kind in "iu" and ts.size == 1:
            t_sample = int(ts.reshape(-1)[0])
    info = {"format": "lava-dl netx HDF5", "input_shape": list(input_shape), "n_inputs": math.prod(input_shape),
            "tSample": t_sample, "layers": records, "notes": notes,
            "skip_input_neuron": bool(skip_input_neuron)}
    return layers, info


def to_graph(path: str | Path, dataset: str | None = None, steps: int | None = None, *,
             skip_input_neuron: bool = False) -> DeployGraph:
    """Import stage for a netx .net file: a quantized DeployGraph Lava runs as the file says.

    Layers: dense weight (n_out, n_in) int64, conv weight (C_out, C_in, kH, kW) int64 with
    in_shape (C, H, W), stride and padding (H, W); vth (int), i_decay = iDecay and
    v_decay = vDecay (ints, 0..4096), weight_exp 0, scale 1.0, threshold (channels,) float64
    = vth; named by their file index ("dense1", "conv2"). n_inputs = the input layer's
    C*H*W (or the first dense layer's n_in); the emulator and Lava take spikes (N, T,
    n_inputs) in C, H, W order. skip_input_neuron: drop an input layer's neuron group and
    transform (netx hdf5.py Network(skip_layers=1)); refused otherwise. steps: defaults
    to the file's simulation/tSample (slayer's sample length) and must then be given if the
    file has none. dataset: a dataset name for later stages (default "(none)"); encoding
    "rate" (a netx file records none). method "netx-import", source_sha256 the file's
    sha256, notes["import"] the report of read_layers (fields netx ignores, zero biases,
    dropped input neuron, where steps came from).
    Raises ModelFileError and UnsupportedLayerError, one line each (see read_layers).
    """
    from ahsar_deploy.checkpoint import sha256
    layers, info = read_layers(path, skip_input_neuron=skip_input_neuron)
    if steps is None:
        if info["tSample"] is None:
            raise ModelFileError(f"{path}: no simulation/tSample in the file; pass the time steps per sample")
        steps, info["steps_from"] = info["tSample"], "simulation/tSample"
    else:
        info["steps_from"] = "given"
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise ModelFileError(f"{path}: time steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    return DeployGraph(layers=tuple(layers), n_inputs=int(info["n_inputs"]), steps=int(steps),
                       dataset="(none)" if dataset is None else str(dataset), encoding="rate",
                       method="netx-import", source_sha256=sha256(path), notes={"import": info})
