"""Self-describing checkpoints (model.pt): written by `ahsar train`, read as untrusted.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with torch.load(weights_only=True): unpickling can build nothing else.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import ModelFileError, UnsupportedLayerError
from .ir import DeployGraph, Layer
from .regulator import AHSARConfig
from .snn import METHODS, SNN

FORMAT = "ahsar-deploy.checkpoint"
VERSION = 1
LAYER_TYPES = ("cuba_lif_dense",)
ENCODING = "rate-deterministic"
MAX_STEPS = 100_000


def make_checkpoint(model: SNN, data, steps: int, seed: int, history: list,
                    test_accuracy: float, test_rates: list[float]) -> dict:
    first = model.layers[0]
    reg = model.regulator
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": {"kind": "mlp", "sizes": list(model.sizes),
                 "layers": [{"type": "cuba_lif_dense", "n_in": l.fc.in_features,
                             "n_out": l.fc.out_features} for l in model.layers]},
        "neuron": {"model": "cuba-lif", "i_decay": first.i_decay, "v_decay": first.v_decay,
                   "reset": "zero", "spike": "v > theta", "dt_s": 1e-3},
        "method": model.method,
        "regulator": None if reg is None else {
            "name": "AHSAR", "config": reg.config.to_dict(),
            "regulated_layers": list(range(reg.n_layers))},
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "thresholds": [[float(t) for t in th] for th in model.thresholds()],
        "data": {"name": data.name, "n_features": data.n_features, "n_classes": data.n_classes,
                 "encoding": "rate-deterministic", "steps": steps},
        "seed": seed,
        "history": history,
        "test_accuracy": test_accuracy,
        "test_rates": test_rates,
        "torch_version": str(torch.__version__),
    }


def save(ckpt: dict, path: str | Path) -> None:
    """Write atomically: a temp file beside the target, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reason(e: Exception) -> str:
    """The telling line of a torch.load failure (weights-only refusals name the global)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported global" in ln or "Unsupported operand" in ln:
            return ln.split("error: ", 1)[-1][:200]
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
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; we report
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        raise ModelFileError(f"{path}: not a loadable weights-only checkpoint ({_reason(e)})") from None
    if not isinstance(ckpt, dict) or not _is(ckpt.get("format"), FORMAT):
        raise ModelFileError(f"{path}: not an ahsar-deploy checkpoint (no format={FORMAT!r} field)")
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
    if rates is not None and not (isinstance(rates, list) and all(_number(r) and 0 <= r <= 1 for r in rates)):
        raise ModelFileError(f"{where}: field 'test_rates' must be a list of rates in [0, 1]")
    hist = ckpt.get("history")
    if hist is None:
        return
    if not isinstance(hist, list):
        raise ModelFileError(f"{where}: field 'history' must be a list of epochs")
    for i, e in enumerate(hist):
        ok = (isinstance(e, dict) and isinstance(e.get("epoch"), int) and _number(e.get("val_accuracy"))
              and isinstance(e.get("rates"), list) and all(_number(r) for r in e["rates"]))
        if not ok:
            raise ModelFileError(f"{where}: history[{i}] needs int 'epoch', number 'val_accuracy' "
                                 f"and a list of numbers 'rates'")


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
    if not _is(arch.get("kind", "mlp"), "mlp"):
        raise UnsupportedLayerError(f"{where}: arch.kind {_show(arch.get('kind'))}; supported: 'mlp'")
    sizes = _field(arch, "sizes", list, f"{where}: arch")
    if (not layers or len(sizes) != len(layers) + 1
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        raise ModelFileError(f"{where}: arch.sizes {_show(sizes)} does not match its {len(layers)} layers")
    for i, spec in enumerate(layers):
        for key, n in (("n_in", sizes[i]), ("n_out", sizes[i + 1])):
            if not _is(spec.get(key, n), n):
                raise ModelFileError(f"{where}: layer {i} field {_show(key)} is {_show(spec.get(key))}, "
                                     f"arch.sizes says {n}")
    neuron = _field(ckpt, "neuron", dict, where)
    i_decay = _field(neuron, "i_decay", int, f"{where}: neuron")
    v_decay = _field(neuron, "v_decay", int, f"{where}: neuron")
    for name, d in (("i_decay", i_decay), ("v_decay", v_decay)):
        if not 0 <= d <= 4096:
            raise ModelFileError(f"{where}: neuron.{name}={d} outside Loihi's 0..4096")
    if not _is(neuron.get("model", "cuba-lif"), "cuba-lif"):
        raise UnsupportedLayerError(f"{where}: neuron model {_show(neuron.get('model'))}; supported: 'cuba-lif'")
    if not _is(neuron.get("reset", "zero"), "zero"):
        raise UnsupportedLayerError(f"{where}: reset mode {_show(neuron.get('reset'))}; supported: 'zero'")
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
    # Shapes first, from the file itself: a forged arch.sizes must not make us allocate.
    for i in range(len(layers)):
        key = f"layers.{i}.fc.weight"
        t = state.get(key)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (sizes[i + 1], sizes[i]):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ModelFileError(f"{where}: layer {i} field {key} has shape/type {shape}, "
                                 f"expected ({sizes[i + 1]}, {sizes[i]}) from arch.sizes")
    try:
        config = AHSARConfig.from_dict(reg["config"]) if reg is not None else None
        model = SNN(sizes, i_decay=i_decay, v_decay=v_decay, method=method, ahsar=config)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{where}: cannot rebuild the model ({e})") from None
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise UnsupportedLayerError(f"{where}: state_dict has entries this toolchain does not "
                                    f"deploy: {', '.join(unexpected[:5])}")
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
    model.load_state_dict(state)
    for l, (layer, th) in enumerate(zip(model.layers, model.thresholds())):
        if not (layer.theta_base > 0).all():
            raise ModelFileError(f"{where}: layers.{l}.theta_base must be positive")
        if not (torch.isfinite(th).all() and (th > 0).all()):
            raise ModelFileError(f"{where}: layer {l} effective threshold (theta_base x AHSAR scale) "
                                 f"is not a positive finite number")
    model.eval()
    return model


def to_graph(path: str | Path) -> DeployGraph:
    """Import stage: checkpoint file -> float DeployGraph with thresholds as trained."""
    ckpt = load(path)
    model = build_model(ckpt, where=str(path))
    data = _field(ckpt, "data", dict, str(path))
    steps = _field(data, "steps", int, f"{path}: data")
    if not 1 <= steps <= MAX_STEPS:
        raise ModelFileError(f"{path}: data.steps must be in 1..{MAX_STEPS}, got {steps}")
    _field(data, "name", str, f"{path}: data")
    if not _is(data.get("encoding", ENCODING), ENCODING):
        raise ModelFileError(f"{path}: data.encoding {_show(data.get('encoding'))} unsupported; "
                             f"supported: {ENCODING!r}")
    if not _is(data.get("n_features", model.sizes[0]), model.sizes[0]):
        raise ModelFileError(f"{path}: data.n_features {_show(data.get('n_features'))} does not match "
                             f"the first layer's {model.sizes[0]} inputs")
    rates = ckpt.get("test_rates")
    rates = rates if isinstance(rates, list) and len(rates) == len(model.layers) else [None] * len(model.layers)
    layers = []
    n_layers = len(model.layers)
    for l, (layer, th) in enumerate(zip(model.layers, model.thresholds())):
        layers.append(Layer(
            name=f"layer{l}",
            weight=layer.fc.weight.detach().double().numpy().copy(),
            threshold=th.detach().double().numpy().copy(),
            i_decay=layer.i_decay, v_decay=layer.v_decay,
            regulated=model.regulator is not None and l < n_layers - 1,
            train_rate=float(rates[l]) if isinstance(rates[l], (int, float)) and math.isfinite(rates[l]) else None))
    acc = ckpt.get("test_accuracy")
    return DeployGraph(
        layers=tuple(layers), n_inputs=model.sizes[0], steps=steps,
        dataset=str(data.get("name")), encoding=str(data.get("encoding", "rate-deterministic")),
        method=model.method, source_sha256=sha256(path),
        float_accuracy=float(acc) if isinstance(acc, float) else None)

