"""Self-describing checkpoints (model.pt): written by `ahsar train`, read as untrusted.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with torch.load(weights_only=True): unpickling can build nothing else.
"""
from __future__ import annotations

import hashlib
import math
import warnings
import zipfile
from pathlib import Path

import torch

from .data import ENCODINGS
from .errors import ModelFileError, UnsupportedLayerError
from .interrupts import atomic_path
from .ir import DeployGraph, Layer
from .regulator import AHSARConfig
from .snn import METHODS, NEURONS, SNN

FORMAT = "ahsar-deploy.checkpoint"
VERSION = 1
LAYER_TYPES = ("cuba_lif_dense", "cuba_lif_conv", "sum_pool", "avg_pool", "flatten")
# integer fields each layer type needs, with their smallest allowed value
_LAYER_INTS = {"cuba_lif_dense": {"n_out": 1},
               "cuba_lif_conv": {"out_channels": 1, "kernel": 1, "stride": 1, "padding": 0},
               "sum_pool": {"kernel": 1}, "avg_pool": {"kernel": 1}, "flatten": {}}
MAX_STEPS = 100_000
ARCH_KINDS = ("mlp", "cnn", "rnn")   # rnn: some layer recurrent (checked); the layer specs say the rest


def make_checkpoint(model: SNN, data, steps: int, seed: int, history: list,
                    test_accuracy: float, test_rates: list[float], encoding: str = "rate",
                    extra: dict | None = None) -> dict:
    first = model.layers[0]
    reg = model.regulator
    is_cnn = any(s["type"] != "cuba_lif_dense" for s in model.specs)
    kind = "rnn" if any(s.get("recurrent") for s in model.specs) else "cnn" if is_cnn else "mlp"
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": {"kind": kind, "input_shape": list(model.input_shape),
                 "sizes": list(model.sizes), "layers": [dict(s) for s in model.specs]},
        "neuron": {"model": "cuba-lif", "i_decay": first.i_decay, "v_decay": first.v_decay,
                   "reset": "zero", "spike": "v > theta", "dt_s": 1e-3} if model.neuron == "loihi" else {
            "model": "cuba-lif", "name": model.neuron, "i_decay": first.i_decay, "v_decay": first.v_decay,
            **NEURONS[model.neuron], "spike": "n = clamp(floor(v / theta), 0, cap) events, v -= n * theta",
            "dt_s": 1e-3},
        "method": model.method,
        "regulator": None if reg is None else {
            "name": "AHSAR", "config": reg.config.to_dict(),
            "regulated_layers": list(range(reg.n_layers))},
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "thresholds": [[float(t) for t in th] for th in model.thresholds()],
        "data": {"name": data.name, "n_features": data.n_features, "n_classes": data.n_classes,
                 "encoding": encoding, "steps": steps},
        "seed": seed,
        "history": history,
        "test_accuracy": test_accuracy,
        "test_rates": test_rates,
        "torch_version": str(torch.__version__),
        **(extra or {}),
    }


def save(ckpt: dict, path: str | Path) -> None:
    """Write atomically (interrupts.atomic_path): a temp file beside the target, renamed
    into place when complete, removed on any error or interrupt.

    The same dict gives the same bytes whatever the file is called: torch.save names the
    zip's folder after a path it is given (here a random temporary name), and "archive"
    for an open file, which is what it gets."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(ckpt, f)


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_NIR_ROUTE = ("export your network to NIR (snnTorch export_to_nir, norse to_nir, sinabs to_nir), "
              "nir.write it and pass the .nir file")


def _reason(e: Exception) -> str:
    """Why torch.load refused a file, in a whole sentence: a pickled Python object (its
    class named), or the first line of the error."""
    import re
    text = " ".join(str(e).split())
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (f"it holds a pickled Python object ({m.group(1)}), which is never unpickled here "
                f"since that could run code; save weights only, or {_NIR_ROUTE}")
    m = re.search(r"Unsupported operand \d+", text)
    if m:
        return f"{m.group(0)} in its pickle: not a weights-only torch file"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def _check_archive(path: Path) -> None:
    """torch.save writes a zip of stored (uncompressed) entries with CRC-32s, which
    torch.load does not verify: a damaged byte in a tensor would load as a wrong weight."""
    try:
        if not zipfile.is_zipfile(path):
            return   # not an archive at all: torch.load refuses it below
        with zipfile.ZipFile(path) as z:
            packed = [i.filename for i in z.infolist() if i.compress_type != zipfile.ZIP_STORED]
            bad = None if packed else z.testzip()
    except Exception as e:  # zipfile raises several types for damaged archives
        raise ModelFileError(f"{path}: damaged checkpoint archive ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:120]})") from None
    if packed:
        raise ModelFileError(f"{path}: compressed entry {_show(packed[0])}; torch.save stores "
                             f"entries uncompressed: not a checkpoint written by torch")
    if bad is not None:
        raise ModelFileError(f"{path}: damaged checkpoint: entry {_show(bad)} fails its CRC-32 check")


def load(path: str | Path) -> dict:
    """Load and check a checkpoint; every failure is a one-line ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        raise ModelFileError(f"{path}: an HDF5 file (a lava-dl netx network?), not a checkpoint; pass it "
                             f"with the .net suffix to deploy it as it is")
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; we report
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        raise ModelFileError(f"{path}: not a loadable weights-only checkpoint ({_reason(e)})") from None
    if not isinstance(ckpt, dict) or not _is(ckpt.get("format"), FORMAT):
        tensors = isinstance(ckpt, dict) and any(isinstance(v, (torch.Tensor, dict)) for v in ckpt.values())
        what = "; a state_dict or another library's checkpoint?" if tensors else ""
        raise ModelFileError(f"{path}: not an ahsar-deploy checkpoint (no format field{what}): weights "
                             f"alone do not say how the neurons behave; {_NIR_ROUTE}")
    if not _is(ckpt.get("version"), VERSION):
        raise ModelFileError(f"{path}: checkpoint version {_show(ckpt.get('version'))} unsupported "
                             f"(this toolchain reads version {VERSION})")
    for key in ("arch", "neuron", "method", "state_dict", "data"):
        if key not in ckpt:
            raise ModelFileError(f"{path}: checkpoint lacks the {_show(key)} field")
    _check_reports(ckpt, str(path))
    return ckpt


def _is(v, expected) -> bool:
    """v == expected for plain values only (a tensor field must not reach ==)."""
    return type(v) is type(expected) and v == expected


def _show(v) -> str:
    """A value for an error message: short, one line (a forged field may be anything)."""
    plain = (str, int, float, bool, type(None))
    if isinstance(v, plain) or isinstance(v, list) and all(isinstance(x, plain) for x in v):
        text = repr(v).replace("\n", " ")
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(v).__name__}"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_reports(ckpt: dict, where: str) -> None:
    """Training's reports (test_accuracy, test_rates, history) are optional, but typed."""
    acc = ckpt.get("test_accuracy")
    if acc is not None and not (_number(acc) and 0 <= acc <= 1):
        raise ModelFileError(f"{where}: field 'test_accuracy' must be a number in [0, 1], got {_show(acc)}")
    rates = ckpt.get("test_rates")
    neuron = ckpt.get("neuron") if isinstance(ckpt.get("neuron"), dict) else {}
    cap = neuron.get("max_events", 1)   # a multi-event neuron's rate is events per neuron-step
    cap = cap if _is(neuron.get("reset"), "subtract") and isinstance(cap, int) and 1 <= cap <= 31 else 1
    if rates is not None and not (isinstance(rates, list) and all(_number(r) and 0 <= r <= cap for r in rates)):
        raise ModelFileError(f"{where}: field 'test_rates' must be a list of rates in [0, {cap}]")
    hist = ckpt.get("history")
    if hist is None:
        return
    if not isinstance(hist, list):
        raise ModelFileError(f"{where}: field 'history' must be a list of epochs")
    real = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)   # NaN loss is a fact
    reals = lambda v: isinstance(v, list) and all(real(x) for x in v)
    for i, e in enumerate(hist):
        ok = (isinstance(e, dict) and isinstance(e.get("epoch"), int) and reals(e.get("rates"))
              and all(real(e.get(k)) for k in ("train_loss", "val_loss", "val_accuracy"))
              and ("gain" not in e or real(e["gain"]) and reals(e.get("scales")) and reals(e.get("h", []))))
        if not ok:
            raise ModelFileError(f"{where}: history[{i}] needs int 'epoch', numbers 'train_loss', "
                                 f"'val_loss', 'val_accuracy', a list of numbers 'rates' (and with "
                                 f"'gain', lists 'scales' and 'h')")


def _field(d: dict, key: str, kind, where: str):
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise ModelFileError(f"{where}: field {_show(key)} missing or not {getattr(kind, '__name__', kind)}")
    return v


def build_model(ckpt: dict, where: str = "checkpoint") -> SNN:
    """Rebuild the trained SNN from a checkpoint dict, checking every field."""
    arch = _field(ckpt, "arch", dict, where)
    layers = _field(arch, "layers", list, f"{where}: arch")
    for i, spec in enumerate(layers):
        kind = spec.get("type") if isinstance(spec, dict) else None
        if not isinstance(kind, str) or kind not in LAYER_TYPES:
            raise UnsupportedLayerError(
                f"{where}: layer {i} has type {_show(kind)}; supported: {', '.join(LAYER_TYPES)}")
        for key in ("recurrent", "bias"):
            if not isinstance(spec.get(key, False), bool):
                raise ModelFileError(f"{where}: layer {i} ({kind}) field {key!r} is {_show(spec[key])}, "
                                     f"expected true or false")
        for key, low in _LAYER_INTS[kind].items():
            v = spec.get(key, 1 if key == "stride" else 0 if key == "padding" else None)
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= 65536:
                raise ModelFileError(f"{where}: layer {i} ({kind}) field {key!r} is {_show(v)}, "
                                     f"expected an integer >= {low}")
    if not (isinstance(arch.get("kind", "mlp"), str) and arch.get("kind", "mlp") in ARCH_KINDS):
        raise UnsupportedLayerError(f"{where}: arch.kind {_show(arch.get('kind'))}; supported: "
                                    f"{', '.join(map(repr, ARCH_KINDS))}")
    recurrent = any(spec.get("recurrent", False) for spec in layers)
    if (arch.get("kind") == "rnn") != recurrent:
        raise UnsupportedLayerError(f"{where}: arch.kind {_show(arch.get('kind', 'mlp'))} but "
                                    f"{'a' if recurrent else 'no'} layer has 'recurrent': true; kind 'rnn' "
                                    f"is for networks with recurrent layers, 'mlp' or 'cnn' otherwise")
    sizes = arch.get("sizes")
    shape = arch.get("input_shape", sizes[:1] if isinstance(sizes, list) else None)
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 1 << 20 for n in shape)):
        raise ModelFileError(f"{where}: arch.input_shape {_show(shape)} is not a list of 1-3 positive integers")
    neuron = _field(ckpt, "neuron", dict, where)
    i_decay = _field(neuron, "i_decay", int, f"{where}: neuron")
    v_decay = _field(neuron, "v_decay", int, f"{where}: neuron")
    for name, d in (("i_decay", i_decay), ("v_decay", v_decay)):
        if not 0 <= d <= 4096:
            raise ModelFileError(f"{where}: neuron.{name}={d} outside Loihi's 0..4096")
    if not _is(neuron.get("model", "cuba-lif"), "cuba-lif"):
        raise UnsupportedLayerError(f"{where}: neuron model {_show(neuron.get('model'))}; supported: 'cuba-lif'")
    got = {k: neuron.get(k, d) for k, d in (("reset", "zero"), ("max_events", 1), ("readout_max_events", 1))}
    neuron_kind = next((n for n, v in NEURONS.items() if all(_is(got[k], v[k]) for k in got)), None)
    if neuron_kind is None:
        known = "; ".join(f"{n}: reset {v['reset']!r}, max_events {v['max_events']}, readout_max_events "
                          f"{v['readout_max_events']}" for n, v in NEURONS.items())
        raise UnsupportedLayerError(f"{where}: neuron reset mode {_show(got['reset'])}, max_events "
                                    f"{_show(got['max_events'])}, readout_max_events "
                                    f"{_show(got['readout_max_events'])}; supported: {known}")
    method = ckpt.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise ModelFileError(f"{where}: method {_show(method)} unknown; known: {', '.join(METHODS)}")
    reg = ckpt.get("regulator")
    if reg is not None and not (isinstance(reg, dict) and isinstance(reg.get("config"), dict)):
        raise ModelFileError(f"{where}: field 'regulator' must be null or a dict with a 'config' dict")
    for key, val in (reg or {}).get("config", {}).items():
        ok = val in ("integral", "proportional") if key == "control" and isinstance(val, str) else _number(val)
        if not ok:
            raise ModelFileError(f"{where}: regulator.config.{_show(key)} = {_show(val)} is not a valid value")
    state = _field(ckpt, "state_dict", dict, where)
    if not all(isinstance(k, str) for k in state):
        raise ModelFileError(f"{where}: state_dict keys must be strings")
    try:
        config = AHSARConfig.from_dict(reg["config"]) if reg is not None else None
        with torch.device("meta"):   # shapes only: a forged arch must not make us allocate
            skeleton = SNN(i_decay=i_decay, v_decay=v_decay, method=method, ahsar=config,
                           input_shape=tuple(shape), specs=layers, neuron=neuron_kind)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
        raise ModelFileError(f"{where}: cannot rebuild the model ({e})") from None
    if sizes is not None and not _is(sizes, skeleton.sizes):
        raise ModelFileError(f"{where}: arch.sizes {_show(sizes)} does not match the layers' "
                             f"{_show(skeleton.sizes)}")
    syns = iter(l.syn for l in skeleton.layers)
    for i, spec in enumerate(layers):
        syn = next(syns) if spec["type"].startswith("cuba_lif") else None
        if spec["type"] == "cuba_lif_dense" and not _is(spec.get("n_in", syn.in_features), syn.in_features):
            raise ModelFileError(f"{where}: layer {i} field 'n_in' is {_show(spec['n_in'])}, "
                                 f"its input has {syn.in_features}")
    expected = skeleton.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        flag = next((f for f, end in (("recurrent", ".rec.weight"), ("bias", ".bias"))
                     if any(k.endswith(end) for k in unexpected)), None)
        hint = f" (a layer's {flag} weights without {flag!r}: true in its arch.layers spec?)" if flag else ""
        raise UnsupportedLayerError(f"{where}: state_dict has entries this toolchain does not "
                                    f"deploy: {', '.join(unexpected[:5])}{hint}")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelFileError(f"{where}: state_dict lacks {', '.join(missing[:5])}")
    for key, ref in expected.items():
        t = state[key]
        if (not isinstance(t, torch.Tensor) or t.shape != ref.shape or not t.is_floating_point()
                or t.layout != torch.strided):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            dtype = str(t.dtype) if isinstance(t, torch.Tensor) else ""
            raise ModelFileError(f"{where}: {key} has shape/type {shape} {dtype}, expected dense float "
                                 f"{tuple(ref.shape)}")
        bad = t.isnan().any() if key == "regulator.best_val_loss" else ~torch.isfinite(t).all()
        if bad:   # best_val_loss starts at +inf and is never deployed
            raise ModelFileError(f"{where}: {key} contains NaN or Inf")
    model = SNN(i_decay=i_decay, v_decay=v_decay, method=method, ahsar=config,
                input_shape=tuple(shape), specs=layers, neuron=neuron_kind)   # its size is the file's: checked above
    model.load_state_dict(state)
    for l, th in enumerate(model.thresholds()):
        if not (torch.isfinite(th).all() and (th > 0).all()):
            raise ModelFileError(f"{where}: layers.{l} threshold (theta_base"
                                 f"{' * |v_th| * e_run' if model.layers[l].hoyer else ''}"
                                 f"{' * AHSAR scale' if model.regulator is not None else ''}) "
                                 f"must be positive and finite")
    model.eval()
    return model


def model_layers(model: SNN, rates: list | None = None) -> list[Layer]:
    """The model's spiking layers as IR layers (float, thresholds as trained). Pooling is
    no IR layer: each pooling is fused into the layer after it (passes/fuse.py), exactly.
    Recurrent weights (n_out, n_out) and biases (n_out,) go to Layer.recurrent and
    Layer.bias as float64 copies, in the units of weight and threshold (None if absent)."""
    from .passes.fuse import fuse_pool
    rates = rates or [None] * len(model.layers)
    n_layers = len(model.layers)
    thresholds = model.thresholds()
    layers, shape, pools = [], tuple(model.input_shape), []
    for step in model._plan:
        if step[0] == "pool":
            pools.append((shape, step[2], "sum" if step[1] == "sum_pool" else "avg"))
            shape = (shape[0], shape[1] // step[2], shape[2] // step[2])
        elif step[0] == "flatten":
            shape = (math.prod(shape),)
        else:
            l = step[1]
            m = model.layers[l]
            conv = dict(kind="conv", in_shape=tuple(shape), stride=tuple(m.syn.stride),
                        padding=tuple(m.syn.padding)) if m.is_conv else {}
            rate = rates[l]
            layer = Layer(
                name=f"layer{l}", weight=m.syn.weight.detach().double().numpy().copy(),
                threshold=thresholds[l].numpy().copy(), i_decay=m.i_decay, v_decay=m.v_decay,
                regulated=model.regulator is not None and l < n_layers - 1,
                recurrent=None if m.rec is None else m.rec.weight.detach().double().numpy().copy(),
                bias=None if m.bias is None else m.bias.detach().double().numpy().copy(),
                reset=m.reset, max_events=m.max_events,
                train_rate=float(rate) if isinstance(rate, (int, float)) and math.isfinite(rate) else None,
                **conv)
            shape = layer.out_shape
            for pshape, k, mode in reversed(pools):
                layer = fuse_pool(layer, pshape, k, mode)
            pools = []
            layers.append(layer)
    return layers


def to_graph(path: str | Path) -> DeployGraph:
    """Import stage: checkpoint file -> float DeployGraph with thresholds as trained."""
    ckpt = load(path)
    model = build_model(ckpt, where=str(path))
    data = _field(ckpt, "data", dict, str(path))
    steps = _field(data, "steps", int, f"{path}: data")
    if not 1 <= steps <= MAX_STEPS:
        raise ModelFileError(f"{path}: data.steps must be in 1..{MAX_STEPS}, got {steps}")
    _field(data, "name", str, f"{path}: data")
    encoding = data.get("encoding", "rate")
    if not (isinstance(encoding, str) and encoding in ENCODINGS):
        raise ModelFileError(f"{path}: data.encoding {_show(encoding)} unsupported; "
                             f"supported: {', '.join(ENCODINGS)}")
    if not _is(data.get("n_features", model.sizes[0]), model.sizes[0]):
        raise ModelFileError(f"{path}: data.n_features {_show(data.get('n_features'))} does not match "
                             f"the first layer's {model.sizes[0]} inputs")
    rates = ckpt.get("test_rates")
    rates = rates if isinstance(rates, list) and len(rates) == len(model.layers) else [None] * len(model.layers)
    layers = model_layers(model, rates)
    acc = ckpt.get("test_accuracy")
    return DeployGraph(
        layers=tuple(layers), n_inputs=model.sizes[0], steps=steps,
        dataset=str(data.get("name")), encoding=str(data.get("encoding", "rate")),
        method=model.method, source_sha256=sha256(path),
        float_accuracy=float(acc) if isinstance(acc, float) else None)

