"""The CLI's stages as Python functions, on files or on in-memory objects.

    import ahsar_deploy as ad
    ad.export(nir_graph, "loihi", "build", calib=x_spikes)   # nir.NIRGraph, (N, T, F) ndarray
    result = ad.run("build", x_test, y_test)                 # emulator by default
    report = ad.energy("build", x_test)

Every function raises a DeployError subclass (errors.py) whose message is one line naming
what, where and the fix, as the CLI prints it. Nothing here prints; progress bars only
with progress=True. Shapes: spikes (N, T, F) 0/1 (uint8 or bool), intensities (N, F)
floats in [0, 1] (encoded with the build's own input coding, data.encode), labels (N,)
integers.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from exporters import DEFAULT_BACKEND

from . import data as datamod
from . import checks, interrupts, runs
from . import build as _build
from .build import eval_inputs, load, load_predictions, load_source
from .errors import BackendError, DatasetError, DeployError, ModelFileError

__all__ = ["export", "run", "energy", "inspect", "inputs"]
log = logging.getLogger(__name__)


def export(model, target: str = "loihi", out_dir: str | Path = "build", *,
           data: str | Path | datamod.Dataset | None = None, calib: str | Path | np.ndarray | None = None,
           steps: int | None = None, dt: float | None = None, progress: bool = False, **options) -> dict:
    """Import -> fold -> calibrate [-> QAT] [-> readout refit] -> check -> fidelity -> write
    the build directory out_dir for `target` (hw_targets: loihi, loihi2); returns its
    manifest (dict, as manifest.json).

    model: a checkpoint of `ahsar train` (path), a NIR graph (a .nir path or a
    nir.NIRGraph). data: calibration and validation data (a built-in name, an .npz file or
    from_arrays(); default the checkpoint's). calib: calibration inputs, (N, T, F) 0/1
    spikes or (N, F) intensities in [0, 1], as an array or a .npy file; a time-first
    (T, N, F) array is refused when the model's steps show it (build.load_calibration).
    A NIR graph needs data or calib; steps (time steps per sample) come from the graph's
    own record, else from spike data when not given (logged: how the array was read).
    dt: seconds per time step of a NIR graph (default: the dt the graph shows, else 1 ms).
    options: force, calib_samples, qat ("auto" | "on" | "off"), refit, tolerance_pp,
    qat_samples, nir_tau ("seconds" | "norse" | "norse:DT"), strict, encoding, reference
    (your model's class predictions (M,) on the test split of data, an array or .npy file),
    as the CLI's flags (build.export). Raises DeployError subclasses (BuildError, DatasetError,
    ModelFileError, UnsupportedLayerError, TargetError, FidelityError) in one line."""
    if not isinstance(model, (str, Path)) and not _build._in_memory_nir(model):
        raise ModelFileError(f"model: a {type(model).__name__}; pass a checkpoint or .nir/.net path, or a "
                             f"nir.NIRGraph (a torch module: export it with its library's to_nir first)")
    if not isinstance(out_dir, (str, Path)):
        raise DeployError(f"out_dir: a {type(out_dir).__name__}; pass the build directory's path")
    if calib is not None and not isinstance(calib, (str, Path, np.ndarray)):
        calib = _array("calib", calib)
    return _build.export(model, target, out_dir, dataset=data, calib=calib, steps=steps, dt_s=dt,
                         progress=progress, **options)


def _array(what: str, a) -> np.ndarray:
    """An array-like (numpy, a CPU torch tensor, nested lists) as a numpy array; DatasetError if not."""
    if hasattr(a, "detach"):   # torch.Tensor
        a = a.detach().cpu().numpy()
    try:
        out = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{what}: not an array ({type(a).__name__}: {e})") from None
    if out.dtype.kind not in "biuf":
        raise DatasetError(f"{what}: dtype {out.dtype} ({type(a).__name__}); expected numbers")
    return out


def inputs(build: str | Path, x: np.ndarray | None = None, *, data: str | Path | datamod.Dataset | None = None,
           samples: int | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The inputs a build runs on: x as given (spikes (N, T, F), or intensities (N, F)
    encoded as the build's model was trained), else the test split of data (a built-in
    name, an .npz file, a data.Dataset; default the build's dataset), its first `samples`.
    Returns (spikes (N, T, F) uint8, labels (N,) int64 or None, a name for the data).
    Raises DeployError for samples not None or >= 1 (checks.run_args), DatasetError for x."""
    checks.run_args(samples=samples)
    graph, _ = load(_build_path(build))
    if x is None:
        xs, y = eval_inputs(graph, data, samples)
        return xs, y, data.name if isinstance(data, datamod.Dataset) else str(data or graph.dataset)
    x = _array("x", x)
    if x.ndim == 2:
        if x.shape[1] != graph.n_inputs:
            raise DatasetError(f"x: shape {x.shape}; the build takes {graph.n_inputs} inputs per sample")
        if x.dtype.kind not in "biuf" or not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            raise DatasetError(f"x: intensities must be finite numbers in [0, 1] (dtype {x.dtype})")
        x = datamod.encode(x, graph.steps, graph.encoding)
    elif x.ndim != 3 or x.shape[1:] != (graph.steps, graph.n_inputs) or not np.isin(x, (0, 1)).all():
        raise DatasetError(f"x: shape {x.shape}, dtype {x.dtype}; the build takes (N, {graph.steps}, "
                           f"{graph.n_inputs}) spikes of 0 and 1, or (N, {graph.n_inputs}) intensities")
    return np.asarray(x, dtype=np.uint8)[:samples], None, datamod.IN_MEMORY


def _build_path(build) -> Path:
    if not isinstance(build, (str, Path)):
        raise DeployError(f"build: a {type(build).__name__}; pass a build directory (or a .net file) path "
                          f"(export a model first: ad.export)")
    return Path(build)


def _data_id(name: str) -> str:
    """What a cached run must match to be reused: a built-in name, or a data file's resolved
    path, size and modification time (a changed or another file is not the same data)."""
    p = Path(name)
    if name in datamod.DATASETS or name == datamod.IN_MEMORY or not p.is_file():
        return name
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _check_device(device: str, backend: str | None) -> None:
    """BackendError unless device is "cpu", or the emulator (backend "emulator" or None,
    the default) can run on it (torch_emulator._device)."""
    if device == "cpu":
        return
    if backend not in (None, "emulator"):
        raise BackendError(f"--device {device}: only --backend emulator runs on a torch device; {backend} runs "
                           f"on the CPU (drop --device)")
    from .torch_emulator import _device
    _device(device)


def _backend(build, graph, backend: str, x: np.ndarray, timeout: float, progress: bool, device: str = "cpu"):
    from exporters import BACKENDS
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    _check_device(device, backend)
    log.info("running %d samples x %d steps on %s%s", len(x), graph.steps, backend,
             "" if device == "cpu" else f" ({device})")
    t0 = time.perf_counter()
    spikes = BACKENDS[backend](build, graph, x, timeout, progress, **({"device": device} if device != "cpu" else {}))
    return spikes, time.perf_counter() - t0


def run(build: str | Path, x: np.ndarray | None = None, y: np.ndarray | None = None, *,
        data: str | Path | datamod.Dataset | None = None, samples: int | None = None,
        backend: str = DEFAULT_BACKEND, reference: str | Path | np.ndarray | None = None,
        timeout: float = 1800, progress: bool = False, device: str = "cpu") -> dict:
    """Run a build (or a lava-dl netx .net file, deployed into a temporary build first) on
    a backend ("emulator": bit-exact integer model of the build's chip; "lava": Lava's Loihi
    simulation; "norse": float reference from model.nir; "xylosim": rockpool's XyloSim, for
    xylo-audio2 builds, which lava and norse refuse) and compare it with the float
    source model on the same samples (source.npz) and, if given, with `reference`
    predictions (N,) of your own framework (an array or a .npy file).

    x, y: inputs and labels (see inputs()); without x, data/samples choose the test split.
    device: the torch device the emulator runs on ("cpu", "cuda", ...; torch_emulator.py).
    Returns the result dict (accuracy None without labels; per-layer "counters" of
    energy_report.count; "source" and "reference" comparisons), also written to
    BUILD/run-BACKEND.json. Raises DeployError subclasses (BuildError, DatasetError,
    BackendError) in one line, and DeployError for samples or timeout out of range
    (checks.run_args: the CLI's checks, in the API's spelling)."""
    checks.run_args(samples=samples, timeout=timeout)
    if _build_path(build).suffix.lower() == ".net" and Path(build).is_file():   # a lava-dl netx network
        import tempfile
        with tempfile.TemporaryDirectory(prefix="ahsar-net-") as tmp:
            export(build, "loihi", Path(tmp) / "b", data=data, calib=None if data is not None else x,
                   progress=progress)
            return run(Path(tmp) / "b", x, y, data=data, samples=samples, backend=backend,
                       reference=reference, timeout=timeout, progress=progress, device=device)
    from .emulator import run as emulate
    from .energy_report import count
    from .passes.fidelity import compare
    graph, _ = load(build)
    source = load_source(build, graph)
    xs, ys, name = inputs(build, x, data=data, samples=samples)
    if y is not None:
        ys = _array("y", y)
        if ys.dtype.kind not in "iu" or ys.ndim != 1 or ys.shape[0] < len(xs):
            raise DatasetError(f"y: dtype {ys.dtype}, shape {ys.shape}; expected ({len(xs)},) integer labels")
        ys = ys[:len(xs)].astype(np.int64)
        if len(ys) and (ys.min() < 0 or ys.max() >= graph.layers[-1].n_out):
            raise DatasetError(f"y: labels {ys.min()}..{ys.max()}; the build outputs classes "
                               f"0..{graph.layers[-1].n_out - 1}")
    ref = None
    if reference is not None:
        ref = load_predictions(reference if isinstance(reference, (str, Path)) else _array("reference", reference),
                               len(xs), graph.layers[-1].n_out)
    spikes, secs = _backend(build, graph, backend, xs, timeout, progress, device)
    pred = spikes[-1].sum(axis=1).argmax(axis=1)
    acc = (lambda p: None if ys is None else float(np.mean(p == ys)))
    result = {"backend": backend, "dataset": name, "data_id": _data_id(name), "samples": int(len(xs)),
              "steps": graph.steps,
              "accuracy": acc(pred), "seconds": secs, "seconds_per_sample": secs / len(xs),
              "float_test_accuracy": graph.float_accuracy, "predictions": pred.tolist(),
              "counters": count(graph, xs, spikes)}
    if source is not None:   # the float source model on the same samples
        if any(l.reset != "zero" for l in source.layers):   # trained with Xylo's neuron (--neuron xylo)
            from exporters.xylo import run_float as emulate_float
            src = emulate_float(source, xs)
        else:
            src = emulate(source, xs, integer=False)
        result["source"] = {"accuracy": acc(src[-1].sum(axis=1).argmax(axis=1)),
                            **compare(src, spikes, [l.name for l in graph.layers])}
    if ref is not None:
        result["reference"] = {"file": Path(reference).name if isinstance(reference, (str, Path)) else "(array)",
                               "agreement": float(np.mean(pred == ref)), "accuracy": acc(ref)}
    keys = runs.sample_keys(xs)   # the spikes join the build's cache (runs.py), then the result
    runs.save(build, backend, *runs.merge(_load_cache(build, backend, graph), keys, spikes))
    with interrupts.atomic_path(Path(build) / f"run-{backend}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _load_cache(build, backend: str, graph) -> "runs.Cache | None":
    try:
        return runs.load(build, backend, graph)
    except ValueError as e:   # damaged, foreign or older: never priced, run again
        log.warning("warning: ignoring %s (%s); running again", runs.path(build, backend).name, e)
        return None


def _cached_spikes(build, graph, xs: np.ndarray, backend: str | None, timeout: float,
                   progress: bool, device: str = "cpu") -> tuple[list[np.ndarray], str]:
    """Per-layer spikes (N, T, n_l) bool of xs: the samples BUILD/spikes-BACKEND.npz holds
    (backend None: Lava's cache, else the emulator's, whichever holds more of them; for a
    Xylo build XyloSim's, else the emulator's), the others run on that backend (the
    emulator, bit-exact with Lava and with XyloSim, when nothing is cached) and added to its cache.
    Returns (spikes, the backend they came from); the log names the file and the counts."""
    import hw_targets
    _check_device(device, backend)   # whether or not any sample is left to run
    if device != "cpu":
        backend = "emulator"
    keys = runs.sample_keys(xs)
    best, cache, rows = None, None, np.full(len(xs), -1, dtype=np.int64)
    for b in [backend] if backend else ["xylosim" if hw_targets.is_xylo(graph.target) else "lava", "emulator"]:
        c = _load_cache(build, b, graph)
        r = runs.lookup(c, keys)
        if np.count_nonzero(r >= 0) > np.count_nonzero(rows >= 0):
            best, cache, rows = b, c, r
        if (r >= 0).all():
            break
    backend = best or backend or "emulator"
    hit, missing = rows >= 0, np.flatnonzero(rows < 0)
    spikes = [np.zeros((len(xs), graph.steps, l.n_out), dtype=bool) for l in graph.layers]
    for s, c in zip(spikes, cache.spikes if cache is not None else []):
        s[hit] = c[rows[hit]]
    log.info("spikes of %d samples: %d from %s, %d run on %s", len(xs), np.count_nonzero(hit),
             runs.path(build, backend).name if cache is not None else "no cache", len(missing), backend)
    if len(missing):
        new, _ = _backend(build, graph, backend, xs[missing], timeout, progress, device)
        for s, n in zip(spikes, new):
            s[missing] = n
        runs.save(build, backend, *runs.merge(cache, keys[missing], [s[missing] for s in spikes]))
    return spikes, backend


def energy(build: str | Path, x: np.ndarray | None = None, *, data: str | Path | datamod.Dataset | None = None,
           samples: int | None = None, backend: str | None = None, target: str | None = None,
           timeout: float = 1800, progress: bool = False, device: str = "cpu") -> dict:
    """Energy per inference from the spikes the target produced (energy_report.py), over
    the same inputs as run() takes. Samples already in the build's spike cache
    (BUILD/spikes-BACKEND.npz, runs.py; backend None: Lava's, else the emulator's) are
    reused, only the others run (on `backend`, or the cache's, or the emulator, bit-exact
    with Lava, when nothing is cached; on `device`, a torch device) and join the cache; the
    log names the file and counts.
    A network the energy model cannot map is refused before anything runs. target:
    energy model (default the build's). Writes energy.json, energy.md, energy.png into
    the build (for another target than the build's: energy-TARGET.json, .md, .png, so no
    report overwrites another); returns the report with "targets" (every chip and the
    ANN baseline), "sparsity_check" (per layer: "pass", "FAIL" or "not checked") and the
    accuracy of the priced spikes (None without labels). A Xylo build is priced by the
    chip's own model instead (_energy_xylo). Raises DeployError subclasses in one line
    (samples and timeout: checks.run_args, as the CLI)."""
    checks.run_args(samples=samples, timeout=timeout)
    import hw_targets
    from .energy_report import check_sparsity, compare_targets, count, estimate, markdown, plot
    from .passes.map import map_layers
    graph, _ = load(build)
    if hw_targets.is_xylo(graph.target):
        return _energy_xylo(build, graph, x, data, samples, backend, target, timeout, progress)
    model = hw_targets.energy_model(target or graph.target)
    map_layers(graph, model)   # refuse what the chip cannot hold before running anything
    xs, ys, _ = inputs(build, x, data=data, samples=samples)
    spikes, backend = _cached_spikes(build, graph, xs, backend, timeout, progress, device)
    counters = count(graph, xs, spikes)
    accuracy = None if ys is None else float(np.mean(spikes[-1].sum(axis=1).argmax(axis=1) == ys))
    report = estimate(graph, counters, len(xs), model, spikes)
    report["backend"], report["accuracy"] = backend, accuracy   # of the spikes priced, on these samples
    report["targets"] = compare_targets(graph, counters, len(xs), spikes)
    report["sparsity_check"] = check_sparsity(report, graph)
    stem = "energy" if model.name == graph.target else f"energy-{model.name}"   # another chip: its own files
    with interrupts.atomic_paths(*(Path(build) / f"{stem}.{ext}" for ext in ("json", "md", "png"))) as tmp:
        tmp[0].write_text(json.dumps(report, indent=2) + "\n")   # all three replaced together, or none
        tmp[1].write_text(markdown(report))
        plot(report, tmp[2])
    return report


def _energy_xylo(build, graph, x, data, samples, backend, target, timeout, progress) -> dict:
    """energy() for a Xylo build: compute cycles at the measured activity, no joules
    (exporters/xylo.py energy, which says what is and is not priced), the per-layer rate
    check of energy_report.check_sparsity, written to BUILD/energy.json."""
    from exporters import xylo
    from .energy_report import check_sparsity, count
    from .errors import TargetError
    if target not in (None, graph.target):
        raise TargetError(f"--target {target}: a {graph.target} build is priced by its own compute model; "
                          f"drop --target (other chips price Loihi builds)")
    xs, ys, _ = inputs(build, x, data=data, samples=samples)
    spikes, backend = _cached_spikes(build, graph, xs, backend, timeout, progress)
    spec = xylo.load_spec(Path(build) / xylo.SPEC_FILE)
    report = xylo.energy(graph, spec, xs, spikes, count(graph, xs, spikes))
    report["backend"] = backend
    report["accuracy"] = None if ys is None else float(np.mean(spikes[-1].sum(axis=1).argmax(axis=1) == ys))
    report["sparsity_check"] = check_sparsity(report, graph)
    with interrupts.atomic_path(Path(build) / "energy.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def inspect(path, dt_s: float | None = None, tau_convention: str = "seconds") -> dict:
    """What a file holds, without data: a .nir graph (file or nir.NIRGraph) -> how it would deploy (layers, shapes,
    decays, thresholds; exporters.nir_import.describe, with dt_s and tau_convention as
    export takes them); a build directory -> its manifest; a checkpoint -> method, layer
    sizes, dataset, steps, thresholds (mean per layer), test accuracy and rates.
    Raises DeployError subclasses in one line."""
    if _build._in_memory_nir(path):
        from exporters.nir_import import describe
        return describe(path, dt_s=dt_s, tau_convention=tau_convention)
    if not isinstance(path, (str, Path)):
        raise ModelFileError(f"inspect: a {type(path).__name__}; pass a path or a nir.NIRGraph")
    p = Path(path)
    if p.is_dir():
        return load(p)[1]
    if p.suffix.lower() == ".nir":
        from exporters.nir_import import describe
        return describe(p, dt_s=dt_s, tau_convention=tau_convention)
    if p.suffix.lower() == ".net":
        from exporters.netx_import import read_layers
        layers, info = read_layers(p)
        return {**{k: v for k, v in info.items() if k != "layers"}, "path": str(p),
                "layers": [{"name": l.name, "kind": l.kind, "n_in": l.n_in, "n_out": l.n_out, "vth": l.vth,
                            "i_decay": l.i_decay, "v_decay": l.v_decay} for l in layers]}
    from . import checkpoint
    ckpt = checkpoint.load(p)
    model = checkpoint.build_model(ckpt, where=str(p))
    info = ckpt["data"] if isinstance(ckpt["data"], dict) else {}
    return {"method": model.method, "sizes": list(model.sizes), "dataset": info.get("name"),
            "steps": info.get("steps"), "thresholds": [float(t.mean()) for t in model.thresholds()],
            "test_accuracy": ckpt.get("test_accuracy"), "test_rates": ckpt.get("test_rates")}
