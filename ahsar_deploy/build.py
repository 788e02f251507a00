"""The export flow (import -> fold -> calibrate -> check -> emit) and reading a build.

A build directory is written into a temporary sibling and renamed into place only when
complete, so a failed or interrupted export leaves no partial build and an existing
build stays intact until the new one is whole.

Every file an export writes is recorded with its sha256 in manifest.json, and the
manifest's own content too (_write_manifest); load() checks them all before anything
reads the build, so every command, backend and the Python API refuses a damaged or
edited build in one line naming the file (_read_manifest).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

import hw_targets
from exporters import lava as lava_exporter
from exporters import nir as nir_exporter

from . import checkpoint, checks, data, emulator, interrupts, kernels
from .errors import BuildError, DatasetError, DeployError, FidelityError, TargetError, write_error
from .ir import DeployGraph, Layer
from .passes.calibrate import calibrate
from .passes.check import check, check_size
from .passes.fidelity import compare, fidelity, source_check, warning_line
from .passes.fold import fold

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
BUILD_VERSION = 2   # the manifest's "version": 2 records every file's sha256; 1 (none) is refused
REEXPORT = "export the build again (ahsar-export MODEL -o BUILD --force)"
SOURCE = "source.npz"   # the float source model's weights and thresholds (ahsar run compares)
VAL_SAMPLES = 2000   # validation samples behind the export's accuracy report and choices
MIN_SAMPLES = 32     # fewer calibration or validation samples than this: a warning


def _layer_manifest(l: Layer) -> dict:
    m = {"name": l.name, "kind": l.kind, "n_in": l.n_in, "n_out": l.n_out,
         "vth_mant": l.vth, "weight_exp": l.weight_exp, "weight_bits": l.weight_bits,
         "i_decay": l.i_decay, "v_decay": l.v_decay, "du": l.i_decay - 1, "dv": l.v_decay,
         "reset": l.reset, "scale": l.scale, "regulated": l.regulated,
         "train_rate": l.train_rate, "recurrent": l.recurrent is not None, "bias": l.bias is not None}
    if l.kind == "conv":
        m.update({"in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
                  "kernel": list(l.weight.shape[2:]), "stride": list(l.stride),
                  "padding": list(l.padding)})
    return m


def _in_memory_nir(model) -> bool:
    return not isinstance(model, (str, Path)) and type(model).__name__ == "NIRGraph"


def _source_name(model) -> str:
    return "(in-memory NIR graph)" if _in_memory_nir(model) else Path(model).name


def import_graph(model, dataset: str | None = None, steps: int | None = None,
                 dt_s: float | None = None, nir_tau: str = "seconds") -> DeployGraph:
    """Import stage: a checkpoint (model.pt), a NIR graph (*.nir file or nir.NIRGraph)
    -> float DeployGraph; a lava-dl netx network (*.net) -> the quantized DeployGraph it
    holds (exporters/netx_import.py). dataset, steps, dt_s and nir_tau apply to NIR graphs
    (which carry no dataset; an in-memory graph needs steps); dataset and steps to netx."""
    if _in_memory_nir(model):
        from exporters import nir_import
        if steps is None:
            raise DeployError("an in-memory NIR graph carries no time steps: pass steps (or spike data)")
        return nir_import.from_graph(model, dataset=dataset or "", steps=steps, dt_s=dt_s,
                                     tau_convention=nir_tau, where="NIR graph (in memory)")
    if Path(model).suffix.lower() == ".net":
        from exporters import netx_import
        return netx_import.to_graph(model, dataset=dataset or "", steps=steps)
    if Path(model).suffix.lower() == ".nir":
        from exporters import nir_import
        return nir_import.to_graph(model, dataset=dataset, steps=steps, dt_s=dt_s, tau_convention=nir_tau)
    if any(v is not None for v in (steps, dt_s)):
        raise DeployError(f"{model}: --steps and --dt apply to .nir inputs; a checkpoint carries its own")
    graph = checkpoint.to_graph(model)
    if dataset in data.DATASETS and dataset != graph.dataset:   # a file: its shapes are checked
        raise DeployError(f"{model}: trained on {graph.dataset!r}, not {dataset!r}")
    return graph


def _open_npy(path: str | Path, where: str) -> np.ndarray:
    """One .npy array, memory-mapped (the header is checked before any data is read);
    never unpickles. Raises DatasetError naming `where`."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{where}: no such file")
    try:
        a = np.load(p, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DatasetError(f"{where}: not a readable .npy array ({reason})") from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise DatasetError(f"{where}: an .npz archive; pass one .npy array")
    return a


def load_predictions(path: str | Path | np.ndarray, n: int | None, n_classes: int) -> np.ndarray:
    """--reference FILE.npy (or a reference= array): class predictions (M,) integers in
    [0, n_classes) that the user's own framework made on the same test split, in order;
    the first n (M >= n; None: all M) are returned as int64. Never unpickles. Raises
    DatasetError naming the file (or "reference"), shape or range; a file and an array
    take the same checks."""
    array = isinstance(path, np.ndarray)
    where = "reference" if array else f"reference predictions {path}"
    a = path if array else _open_npy(path, where)
    if a.dtype.kind not in "iu" or a.ndim != 1 or len(a) < (n or 1):
        raise DatasetError(f"{where}: dtype {a.dtype}, shape {a.shape}; expected at least {n or 1} integer "
                           f"class indices (M,), one per test sample in order")
    a = np.array(a[:n], dtype=np.int64)
    if a.min(initial=0) < 0 or a.max(initial=0) >= n_classes:
        raise DatasetError(f"{where}: class indices {a.min()}..{a.max()} outside 0..{n_classes - 1}")
    return a


def _calib_steps(calib) -> int | None:
    """T of (N, T, F) spike calibration data (an array, or a .npy file: its header only), else None."""
    if calib is None:
        return None
    a = calib if isinstance(calib, np.ndarray) else _open_npy(calib, f"calibration data {calib}")
    return int(a.shape[1]) if a.ndim == 3 else None


def _recorded_steps(model) -> int | None:
    """The time steps a model file records itself: the metadata of a NIR graph written by
    ahsar-deploy (exporters/nir_import.to_graph reads the same key), a netx network's
    simulation/tSample; None for others (an in-memory graph, another writer's file)."""
    if _in_memory_nir(model):
        return None
    from exporters import netx_import, nir_import
    if Path(model).suffix.lower() == ".net":
        return netx_import.read_layers(model)[1]["tSample"]
    meta = nir_import.read(model).metadata
    meta = meta if isinstance(meta, dict) else {}
    return nir_import._own_meta(meta, "steps", int, model) if meta.get("producer") == "ahsar-deploy" else None


def _calib_reading(calib) -> str:
    """How (N, T, F) calibration data were read, for the console when they alone set the steps."""
    a = calib if isinstance(calib, np.ndarray) else _open_npy(calib, f"calibration data {calib}")
    n, t, f = a.shape
    return (f"calibration {'array' if isinstance(calib, np.ndarray) else calib} of shape {a.shape} read as {n} "
            f"samples x {t} steps x {f} features (N, T, F): the build runs {t} steps, as nothing else says how "
            f"many (time-first (T, N, F) data: np.swapaxes(x, 0, 1); or give the steps: --steps, steps=)")


def _fits(ds: data.Dataset, graph: DeployGraph, what: str) -> None:
    """Raise DatasetError unless the data fit the network: features, and spike data's steps."""
    if ds.n_features != graph.n_inputs:
        raise DatasetError(f"{what}: expects {graph.n_inputs} inputs per sample, data {ds.name} has "
                           f"{ds.n_features}")
    if ds.steps is not None and ds.steps != graph.steps:
        raise DatasetError(f"{what}: runs {graph.steps} time steps, the spikes in {ds.name} have {ds.steps}")
    if graph.layers[0].kind == "conv":   # (H, W, C) images of the same size would run scrambled
        data.check_image_layout(ds.shape, f"{what}: data {ds.name}", spikes=ds.steps is not None,
                                want=tuple(graph.layers[0].in_shape))
    classes = graph.layers[-1].n_out
    top = max(int(sp.y.max(initial=0)) for sp in (ds.train, ds.val, ds.test))
    if top >= classes:   # spikes still mean something; accuracies do not
        log.warning("warning: %s: %d output neurons (classes 0..%d), but %s has label %d: the accuracies "
                    "reported are meaningless; labels must be the class indices the network outputs",
                    what, classes, classes - 1, ds.name, top)


def load_calibration(path: str | Path, graph: DeployGraph, limit: int) -> np.ndarray:
    """--calib FILE.npy or an array: (N, F) intensities in [0, 1] (encoded as the model was
    trained) or (N, T, F) spikes in {0, 1}; at most `limit` samples as (N, T, F) uint8.
    Never unpickles. Raises DatasetError naming the file (or "array"), shape or values."""
    where = "calibration array" if isinstance(path, np.ndarray) else f"calibration data {path}"
    a = path if isinstance(path, np.ndarray) else _open_npy(path, where)
    f, t = graph.n_inputs, graph.steps
    want = f"(N, {f}) intensities in [0, 1] or (N, {t}, {f}) spikes in {{0, 1}}"
    if a.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: dtype {a.dtype} is not numeric; expected {want}")
    if a.ndim == 3 and a.shape[0] == t and a.shape[1] != t and a.shape[2] == f:   # fits as (T, N, F)
        raise DatasetError(f"{where}: shape {a.shape}: read as {a.shape[0]} samples x {a.shape[1]} steps, but "
                           f"the model runs {t} steps; if it is time-first (T, N, F) transpose it to (N, T, F) "
                           f"with np.swapaxes(x, 0, 1)")
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1:] not in ((f,), (t, f)):
        raise DatasetError(f"{where}: shape {a.shape} does not fit the model; expected {want}")
    if a.shape[0] > limit:
        log.info("calibrating on %d of %d samples of the %s (--calib-samples)", limit, a.shape[0], where)
    a = np.array(a[:limit])
    if a.ndim == 2:
        if not (np.all(np.isfinite(a)) and a.min() >= 0 and a.max() <= 1):
            raise DatasetError(f"{where}: intensities must be finite and in [0, 1] "
                               f"(found {a.min():.3g}..{a.max():.3g})")
        return data.encode(a, t, graph.encoding)
    if not np.all((a == 0) | (a == 1)):
        raise DatasetError(f"{where}: (N, T, F) spikes must be 0 or 1")
    return a.astype(np.uint8)


def export(model: str | Path, target_name: str, out_dir: str | Path, force: bool = False,
           calib_samples: int = 512, progress: bool = True, qat: str = "auto",
           refit: bool = True, tolerance_pp: float = 0.5, qat_samples: int = 4096,
           calib: str | Path | None = None, dataset: str | None = None, steps: int | None = None,
           dt_s: float | None = None, nir_tau: str = "seconds", strict: bool = False,
           encoding: str | None = None, reference: str | Path | np.ndarray | None = None) -> dict:
    """Import -> fold -> calibrate [-> QAT] [-> readout refit] -> check -> emit.

    Calibration data: `calib` (a .npy file, see load_calibration) or the training split.
    qat: "auto" fine-tunes when quantization costs more than tolerance_pp validation
    accuracy, "on" always, "off" never. refit: try the convex readout refit and keep it
    if validation accuracy does not drop. Every variant is reported in calibration.json, and
    so is the fidelity pass (passes/fidelity.py): each finding is logged as one `warning:`
    line, and strict=True raises FidelityError instead of writing the build.
    model: a checkpoint, or a NIR graph (*.nir) with dataset and steps for calibration
    (dt_s and nir_tau: how its time constants map to Loihi decays, exporters/nir_import.py).
    dataset: a built-in name or an .npz file (data.load_file), default the checkpoint's.
    A NIR graph calibrates from `calib` or `dataset` alone; its steps default to the time
    steps of spike data, and `encoding` (rate, poisson, latency) says how intensities
    become spikes. Without labelled data (calib only) accuracies are None, QAT and the
    refit are skipped, and the source-vs-build agreement is measured on calibration inputs.
    A Xylo target (hw_targets.XYLO_TARGETS) takes its own flow after the import,
    _export_xylo: no Loihi pass runs on it.
    reference: the user's model's class predictions (M,) on the test split of `dataset` in
    order (as `ahsar run --reference`; without labelled data: on the calibration inputs),
    a .npy file or an array. With it, and with the layers' train_rate, the float graph as
    read is checked against its model (passes/fidelity.py source_check): a divergence is a
    finding, "graph differs from its model", which strict=True refuses.
    """
    if qat not in ("auto", "on", "off"):
        raise BuildError(f"--qat must be auto, on or off, not {qat!r}")
    target = hw_targets.get(target_name)
    out = Path(out_dir)
    empty = out.is_dir() and not any(out.iterdir())   # e.g. a fresh tempfile.mkdtemp(): used as it is
    if out.exists() and not force and not empty:
        raise BuildError(f"{out}: exists; pass --force to replace it")
    if out.exists() and not (out / MANIFEST).is_file() and not empty:
        raise BuildError(f"{out}: exists and is not a build directory; not replacing it")
    checks.export_args(calib_samples=calib_samples, steps=steps)
    ds = None if dataset is None else data.load(dataset)
    nir = _in_memory_nir(model) or Path(model).suffix.lower() == ".nir"
    netx = not nir and Path(model).suffix.lower() == ".net"
    calib_steps = _calib_steps(calib)   # None unless calib holds (N, T, F) spikes
    if (nir or netx) and steps is None:   # spike data set the time steps themselves
        steps = ds.steps if ds is not None else None
        if steps is None and calib_steps is not None:   # the graph's own steps win over the array's layout
            steps = _recorded_steps(model)
            if steps is None:
                steps = calib_steps
                log.info("%s", _calib_reading(calib))
    name = ds.name if ds is not None else "" if calib is not None else None   # "": calibration data only
    graph = import_graph(model, name, steps, dt_s, nir_tau)
    if reference is not None:   # checked before any pass runs
        if hw_targets.is_xylo(target.name):
            raise BuildError(f"--reference: the comparison with your model's predictions runs on Loihi "
                             f"builds; {target.name} builds compare with the float model in calibration.json")
        load_predictions(reference, None, graph.layers[-1].n_out)
    if encoding is not None and ((ds is not None and ds.steps is not None) or calib_steps is not None):
        raise BuildError(f"--encoding {encoding}: the data are spikes already, fed as they are; "
                         f"--encoding says how intensities become spikes")
    if encoding is not None and encoding != graph.encoding:
        if not nir:
            raise BuildError(f"{model}: trained with {graph.encoding} input coding; --encoding applies "
                             f"to .nir graphs")
        if encoding not in ("rate", "poisson", "latency"):
            raise BuildError(f"--encoding {encoding!r}: choose rate, poisson or latency (spikes for the chip)")
        graph = graph.with_(encoding=encoding)
    if graph.encoding == "direct":
        raise BuildError(f"{_source_name(model)}: trained with direct (graded) input; {target.name} takes binary "
                         f"spikes only: retrain with --encoding rate, poisson or latency")
    if hw_targets.is_xylo(target.name):
        return _export_xylo(model, graph, target, out, ds, calib, calib_samples, qat, strict)
    multi = next((l for l in graph.layers if l.reset != "zero"), None)
    if multi is not None:   # trained with --neuron xylo: Loihi would run another neuron
        raise TargetError(f"{_source_name(model)}: {multi.name} was trained with reset by subtraction and up to "
                          f"{multi.max_events} events per step (--neuron xylo); {target.name} resets to zero "
                          f"with one spike per step: deploy with --target xylo-audio2, or retrain with "
                          f"--neuron loihi")
    check_size(graph, target)
    nir_exporter.check_exportable(graph)   # e.g. a bias model.nir cannot hold: refused before calibration
    folded = fold(graph)
    ds, x_cal, cal_source, val, val_y = _data(model, graph, ds, calib, calib_samples)
    if graph.quantized:   # a netx network is on the chip's grid already: deployed as it is
        log.info("%s holds an integer network: deployed as it is (no calibration, QAT or refit); the "
                 "fidelity pass compares it with its exact float model", _source_name(model))
        qgraph, reports, qat, refit = graph.with_(layers=tuple(
            l.with_(scale=float(l.vth), threshold=np.ones(l.channels)) for l in graph.layers),
            target=target.name), [], "off", False
    else:
        qgraph, reports = calibrate(folded, x_cal, target, progress=progress)
    runs = {}   # validation spikes of each variant, for the source-vs-build comparison

    def acc_of(g: DeployGraph, integer: bool, key: str) -> float:
        runs[key] = emulator.run(g, val, integer=integer)
        return None if val_y is None else float(np.mean(runs[key][-1].sum(axis=1).argmax(axis=1) == val_y))

    acc = {"float": acc_of(graph, False, "float"), "folded": acc_of(folded, False, "folded"),
           "quantized": acc_of(qgraph, True, "quantized"), "qat": None, "refit": None}
    chosen = "quantized"
    best_acc = acc["quantized"]
    drop_pp = 0.0 if val_y is None else 100 * (acc["folded"] - acc["quantized"])
    wants_qat = val_y is not None and (qat == "on" or (qat == "auto" and drop_pp > tolerance_pp))
    if wants_qat and any(l.kind != "dense" for l in folded.layers):   # acc["qat"] stays None
        log.warning("warning: quantization costs %.2f pp of validation accuracy; QAT does not fine-tune "
                    "convolutions yet, so the weights are kept as calibrated", drop_pp)
    elif wants_qat:
        from .passes.qat import finetune
        log.info("quantization costs %.2f pp on validation: quantization-aware fine-tune", drop_pp)
        n = min(qat_samples, len(ds.train.y))
        x_qat = data.encode(ds.train.x[:n], graph.steps, graph.encoding)
        tuned = finetune(folded, qgraph, x_qat, ds.train.y[:n], target, progress=progress)
        q2, r2 = calibrate(tuned, x_cal, target, scales=[l.scale for l in qgraph.layers])
        acc["qat"] = acc_of(q2, True, "qat")
        if acc["qat"] > best_acc:
            folded, qgraph, reports, chosen, best_acc = tuned, q2, r2, "qat", acc["qat"]
    if refit and len(folded.layers) > 1 and val_y is not None and folded.layers[-1].recurrent is not None:
        log.info("readout refit skipped: the readout %s is recurrent (passes/refit.py)", folded.layers[-1].name)
    elif refit and len(folded.layers) > 1 and val_y is not None:
        from .passes.refit import refit_readout
        refolded = refit_readout(folded, qgraph, x_cal)
        try:
            q3, r3 = calibrate(refolded, x_cal, target,     # only the readout changed
                               scales=[l.scale for l in qgraph.layers[:-1]] + [None])
        except TargetError as e:   # e.g. no spike reaches the readout: the refit gives it zero weights
            log.warning("warning: readout refit dropped (%s); the calibrated readout is kept", e)
        else:
            acc["refit"] = acc_of(q3, True, "refit")
            # an imported graph keeps the user's own weights unless the refit is strictly better
            if acc["refit"] > best_acc or (acc["refit"] == best_acc and "import" not in graph.notes):
                folded, qgraph, reports, chosen, best_acc = refolded, q3, r3, "refit", acc["refit"]
    acc["chosen"] = chosen
    qgraph = check(qgraph, target)
    fid = fidelity(folded, qgraph, x_cal, target)
    versus = compare(runs["float"], runs[chosen], [l.name for l in qgraph.layers])
    if chosen != "quantized" and "import" in graph.notes:   # the user's own weights were changed
        log.warning("warning: %s changed your model's weights (validation accuracy: float %.2f %%, deployed "
                    "%.2f %%); --qat off --no-refit deploys them as they are", chosen,
                    100 * acc["float"], 100 * acc[chosen])
    fid["source_check"] = _source_check(graph, runs["float"], val_y is None, ds, x_cal, reference)
    for f in fid["source_check"]["findings"] + fid["findings"]:
        log.warning("%s", warning_line(f))
    fid["findings"] = _import_findings(graph, x_cal) + fid["source_check"]["findings"] + fid["findings"]
    if strict:
        _refuse_strict(fid["findings"])
    for r in reports:
        log.info("calibrate %s: scale %.2f vth %d, spike agreement %.4f (%d changed), %d weights clipped",
                 r.name, r.scale, r.vth, r.spike_agreement, r.spikes_changed, r.weights_clipped)
    if val_y is not None:
        log.info("validation accuracy: float %.2f %%, folded %.2f %%, quantized %.2f %%%s%s -> %s",
                 *(100 * acc[k] for k in ("float", "folded", "quantized")),
                 "" if acc["qat"] is None else f", qat {100 * acc['qat']:.2f} %",
                 "" if acc["refit"] is None else f", refit {100 * acc['refit']:.2f} %", chosen)
    log.info("source model vs build on the %d %s samples: same prediction on %.2f %%; spike "
             "agreement %s", len(val), "calibration" if val_y is None else "validation",
             100 * versus["prediction_agreement"],
             ", ".join(f"{l['layer']} {l['spike_agreement']:.4f}" for l in versus["layers"]))
    manifest = {
        "format": "ahsar-deploy.build", "version": BUILD_VERSION, "target": target.name,
        "source": {"file": _source_name(model), "sha256": graph.source_sha256},
        "method": graph.method, "dataset": graph.dataset, "encoding": graph.encoding,
        "steps": graph.steps, "n_inputs": graph.n_inputs, "cores": qgraph.notes["cores"],
        "chips": qgraph.notes["chips"], "cores_per_chip": qgraph.notes["cores_per_chip"],
        "float_test_accuracy": graph.float_accuracy, "kernels": kernels.state(),
        "layers": [_layer_manifest(l) for l in qgraph.layers],
        "files": ["model.nir", "model.net", SOURCE, "calibration.json", "calibration.md", MANIFEST],
    }
    if "import" in graph.notes:
        manifest["import"] = graph.notes["import"]
    calibration = {"calibration_samples": len(x_cal), **cal_source,
                   "validation_samples": None if val_y is None else len(val_y), "tolerance_pp": tolerance_pp,
                   "validation_accuracy": acc, "validation_agreement": versus,
                   "layers": [asdict(r) for r in reports], "fidelity": fid}

    def write(tmp: Path) -> None:
        nir_exporter.write(qgraph, tmp / "model.nir")
        lava_exporter.write_netx(qgraph, tmp / "model.net")
        write_source(graph, tmp / SOURCE)
        (tmp / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
        (tmp / "calibration.md").write_text(calibration_summary(calibration, target.name))
        _write_manifest(tmp, manifest)   # last: it records the digests of the others

    _write_build(out, write)
    return manifest


def _data(model, graph: DeployGraph, ds: "data.Dataset | None", calib, calib_samples: int):
    """The data stage: calibration inputs x_cal (N, T, F) uint8 (from `calib`, else the
    first calib_samples of the training split) with a record of where they came from, and
    validation inputs val (M, T, F) uint8 with labels val_y (M,) int64: the first
    VAL_SAMPLES of the validation split, which decide QAT and refit (and are reported);
    without labelled data the calibration inputs stand in, val_y None.
    Returns (ds, x_cal, cal_source, val, val_y). Raises DatasetError if there are no data
    or they do not fit the graph."""
    if ds is None and graph.dataset and graph.dataset != data.IN_MEMORY:
        ds = data.load(graph.dataset)
    if ds is not None:
        _fits(ds, graph, _source_name(model))
    if calib is None and ds is None:
        raise DatasetError(f"{_source_name(model)}: no calibration data: pass --data NAME|FILE.npz or --calib FILE.npy")
    if calib is None:
        if len(ds.train.y) > calib_samples:
            log.info("calibrating on %d of %d training samples of %s (--calib-samples)", calib_samples,
                     len(ds.train.y), ds.name)
        x_cal = data.encode(ds.train.x[:calib_samples], graph.steps, graph.encoding)
        cal_source = {"split": "train[:%d]" % len(x_cal)}
        if len(ds.train.y) < MIN_SAMPLES or len(ds.val.y) < MIN_SAMPLES:
            log.warning("warning: %s has %d training and %d validation samples; calibration and the choice "
                        "of QAT / refit on fewer than %d are unreliable: give more data", ds.name,
                        len(ds.train.y), len(ds.val.y), MIN_SAMPLES)
    else:
        x_cal = load_calibration(calib, graph, calib_samples)
        cal_source = ({"split": f"array[:{len(x_cal)}]"} if isinstance(calib, np.ndarray) else
                      {"split": f"file[:{len(x_cal)}]",
                       "file": {"name": Path(calib).name, "sha256": checkpoint.sha256(calib)}})
    if ds is None:
        log.info("no labelled data (--data): accuracies are not measured, QAT and the readout refit "
                 "are skipped; the source model and the build are compared on the calibration inputs")
        return ds, x_cal, cal_source, x_cal[:VAL_SAMPLES], None
    return (ds, x_cal, cal_source, data.encode(ds.val.x[:VAL_SAMPLES], graph.steps, graph.encoding),
            ds.val.y[:VAL_SAMPLES])


def _source_check(graph: DeployGraph, float_runs: list[np.ndarray], unlabelled: bool, ds, x_cal: np.ndarray,
                  reference) -> dict:
    """passes/fidelity.py source_check of the float graph as read: its rates on the
    validation inputs (float_runs, emulator.run's) against the layers' train_rate, and,
    with `reference`, its predictions on the first min(M, VAL_SAMPLES) test samples of ds
    (without ds: calibration inputs) against the reference's."""
    samples = f"{len(float_runs[-1])} {'calibration' if unlabelled else 'validation'} inputs"
    assumed = graph.notes.get("import", {}).get("dt_from", "")
    if reference is None:
        return source_check(graph, float_runs, samples, assumed=assumed)
    n_classes = graph.layers[-1].n_out
    ref = load_predictions(reference, None, n_classes)
    if ds is not None:
        n = min(len(ref), len(ds.test.y), VAL_SAMPLES)
        x, what = data.encode(ds.test.x[:n], graph.steps, graph.encoding), f"first {n} test samples of {ds.name}"
    else:
        n = min(len(ref), len(x_cal))
        x, what = x_cal[:n], f"first {n} calibration inputs"
    pred = emulator.run(graph, x, integer=False)[-1].sum(axis=1).argmax(axis=1)
    return source_check(graph, float_runs, samples, ref[:n], pred, what, assumed)


def _refuse_strict(findings: list[dict]) -> None:
    """--strict: raise FidelityError naming the first finding (nothing is written)."""
    if findings:
        f = findings[0]
        raise FidelityError(f"--strict: {f['layer']}: {f['cause']}: {f['detail']} ({len(findings)} "
                            f"finding(s); without --strict they are warnings); nothing was written")


def _write_build(out: Path, write) -> None:
    """Write a build atomically: write(tmp) fills a temporary sibling directory of `out`,
    which then replaces `out` (_replace_dir). On any failure the temporary directory is
    removed and `out` is untouched; an OSError becomes errors.WriteError naming the file
    (or `out`) and the cause (no space left, read-only, permission)."""
    tmp = None
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise BuildError(f"cannot create the build directory {out}: {blocking} is a file, not a folder; "
                         f"choose another -o")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with interrupts.held():   # a signal now arrives after `tmp` is set: it is removed below
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        write(tmp)
        _replace_dir(tmp, out)
    except BaseException as e:
        if tmp is not None:
            with interrupts.held():
                shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):   # the file in the build it was writing, else the build
            inside = tmp is not None and e.filename and Path(e.filename).parent == tmp
            raise write_error(e, out / Path(e.filename).name if inside else out, out) from None
        raise


def _export_xylo(model, graph: DeployGraph, target, out: Path, ds, calib, calib_samples: int,
                 qat: str, strict: bool) -> dict:
    """export() for a Xylo target: fold -> to_xylo (refusals name the limit) -> data ->
    fidelity (float model against the chip's integer model, exporters/xylo.py) -> write
    xylo_spec.npz, source.npz, calibration.json, manifest.json atomically. QAT and the
    readout refit are Loihi passes: --qat on is refused. Returns the manifest."""
    from exporters import xylo as xylo_exporter
    if qat == "on":
        raise BuildError(f"--qat on: quantization-aware fine-tuning targets Loihi's grid; {target.name} "
                         f"builds are not fine-tuned: drop --qat or use --target loihi")
    folded = fold(graph)
    rep = {}
    spec = xylo_exporter.to_xylo(folded, target, report=rep)   # refused here, before any data are read
    ds, x_cal, cal_source, val, val_y = _data(model, graph, ds, calib, calib_samples)
    rec = xylo_exporter.fidelity(graph, folded, spec, x_cal, val, val_y, rep)
    for f in rec["fidelity"]["findings"]:
        log.warning("%s", warning_line(f))
    findings = rec["fidelity"]["findings"] = _import_findings(graph) + rec["fidelity"]["findings"]
    if strict:
        _refuse_strict(findings)
    acc, versus = rec["validation_accuracy"], rec["validation_agreement"]
    if val_y is not None:
        log.info("validation accuracy: float %.2f %%, folded %.2f %%, xylo %.2f %%",
                 *(100 * acc[k] for k in ("float", "folded", "xylo")))
    log.info("float model vs %s on the %d %s samples: same prediction on %.2f %%; spike agreement %s",
             target.name, len(val), "calibration" if val_y is None else "validation",
             100 * versus["prediction_agreement"],
             ", ".join(f"{l['layer']} {l['spike_agreement']:.4f}" for l in versus["layers"]))
    rounding = ("keep_syn", "dash_syn", "keep_syn_chip", "tau_syn_steps", "tau_syn_chip_steps",
                "keep_mem", "dash_mem", "keep_mem_chip", "tau_mem_steps", "tau_mem_chip_steps")
    layers = [{**_layer_manifest(l), "max_events": l.max_events,
               "vth_mant": int(np.max(r["threshold"])), "scale": r["scale"],
               **{k: r[k] for k in ("weight_shift_in", "weight_shift_rec", "weights_clipped")},
               "decay_rounding": {k: r[k] for k in rounding}}
              for l, r in zip(folded.layers, rep["layers"])]
    manifest = {
        "format": "ahsar-deploy.build", "version": BUILD_VERSION, "target": target.name,
        "source": {"file": _source_name(model), "sha256": graph.source_sha256},
        "method": graph.method, "dataset": graph.dataset, "encoding": graph.encoding,
        "steps": graph.steps, "n_inputs": graph.n_inputs, "cores": 1,   # one SNN core per chip
        "chips": 1, "cores_per_chip": [1],
        "float_test_accuracy": graph.float_accuracy, "kernels": kernels.state(), "layers": layers,
        "xylo": {"mapping": rep["mapping"], "differences": rep["differences"],
                 "spec_sha256": None},
        "files": [xylo_exporter.SPEC_FILE, SOURCE, "calibration.json", MANIFEST],
    }
    calibration = {"calibration_samples": len(x_cal), **cal_source,
                   "validation_samples": None if val_y is None else len(val_y), **rec, "xylo": rep}

    def write(tmp: Path) -> None:
        xylo_exporter.save_spec(spec, tmp / xylo_exporter.SPEC_FILE)
        manifest["xylo"]["spec_sha256"] = checkpoint.sha256(tmp / xylo_exporter.SPEC_FILE)  # spikes-*.npz key
        write_source(graph, tmp / SOURCE)
        (tmp / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
        _write_manifest(tmp, manifest)   # last: it records the digests of the others

    _write_build(out, write)
    return manifest


def _import_findings(graph: DeployGraph, x: np.ndarray | None = None) -> list[dict]:
    """What the NIR import changed and warned about (exporters/nir_import.py: a decay moved
    to the nearest legal value, a writer's reset that NIR cannot say) as fidelity findings,
    so calibration.json lists them and --strict refuses them. x: calibration spikes (N, T,
    F); with them, layers deployed in place of snnTorch's delayed reset to zero (import
    report's snntorch_delayed_reset) get the measured size: the fraction of their
    neuron-steps (float model, x) that differ from snnTorch's neuron."""
    imp = graph.notes.get("import", {})
    if imp.get("format") != "nir":   # netx notes are ignored fields and zero biases: no effect
        return []
    fix = "see the detail; --strict refuses the build"
    out = [{"layer": "import", "cause": "import semantics", "size": None, "detail": n, "fix": fix}
           for n in imp.get("notes", [])]
    delayed = {l["layer"] for l in imp.get("layers", []) if l.get("snntorch_delayed_reset")}
    if delayed and x is not None:     # how much snnTorch's delayed reset to zero changes, measured
        from exporters import nir_import
        pairs = [(l.name, w != g) for l, w, g in zip(graph.layers, emulator.run_float_snntorch_delayed(
            graph, x, delayed), emulator.run(graph, x, integer=False)) if l.name in delayed]
        per = {k: float(d.mean()) for k, d in pairs}
        size = sum(int(d.sum()) for _, d in pairs) / sum(d.size for _, d in pairs)
        for f in out:
            if nir_import.DELAYED_RESET in f["detail"]:
                f["size"] = round(size, 4)
                measured = (f"on the {len(x)} calibration samples {size:.1%} of these layers' neuron-steps "
                            "differ from snnTorch's (" + ", ".join(f"{k} {v:.1%}" for k, v in per.items()) + ")")
                f["detail"] += "; " + measured
                log.warning("warning: snnTorch's delayed reset to zero: %s", measured)
    return out + [{"layer": l["layer"], "cause": "decay moved", "size": None, "detail": n, "fix": fix}
                  for l in imp.get("layers", []) for n in l.get("decay_notes", [])]


def calibration_summary(c: dict, target: str) -> str:
    """calibration.json as a short Markdown report for people."""
    a = c["validation_accuracy"]
    fmt = lambda v: "-" if v is None else f"{100 * v:.2f}"
    lines = [f"# Calibration for {target}", "",
             f"Calibration data: {c['split']} ({c['calibration_samples']} samples); accuracy on "
             f"the {c['validation_samples']} validation samples; kept: **{a['chosen']}**.", "",
             "| float | folded | quantized | QAT | readout refit |", "|---|---|---|---|---|",
             f"| {fmt(a['float'])} | {fmt(a['folded'])} | {fmt(a['quantized'])} | {fmt(a['qat'])} "
             f"| {fmt(a['refit'])} |", "",
             "| layer | scale | vth | weights clipped | spike agreement | spikes changed |",
             "|---|---|---|---|---|---|"]
    for r in c["layers"]:
        lines.append(f"| {r['name']} | {r['scale']:.3f} | {r['vth']} | {r['weights_clipped']} | "
                     f"{r['spike_agreement']:.5f} | {r['spikes_changed']} |")
    fid = c.get("fidelity")
    if fid:
        lines += ["", "## Fidelity", "",
                  "| layer | u wraps | v saturations | neuron-steps | threshold error | worst-case u / 2**23 |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {l['layer']} | {l['u_wrap']} | {l['v_saturate']} | {l['neuron_steps']} | "
                  f"{l['threshold_error']:.2%} | {l['u_bound'] / 2 ** 23:.2f} |" for l in fid["layers"]]
        lines += [""] + ([f"- **{f['layer']}, {f['cause']}**: {f['detail']}. Fix: {f['fix']}."
                          for f in fid["findings"]] or ["No finding: nothing seen that makes the chip differ."])
    return "\n".join(lines) + "\n"


def _replace_dir(new: Path, out: Path) -> None:
    """Rename the complete build `new` to `out`. An existing `out` is moved aside, and
    put back if the rename fails; signals wait, so the old build is never lost. A signal
    recorded earlier (interrupts.check) stops it before anything moves."""
    with interrupts.held():
        interrupts.check()
        if not out.exists():
            new.rename(out)
            return
        old = out.with_name(f".{out.name}.old-{new.name[-8:]}")
        out.rename(old)
        try:
            new.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)


def load(build_dir: str | Path) -> tuple[DeployGraph, dict]:
    """Read a build back: (graph, manifest dict). A Loihi build: the integer DeployGraph
    (weights from model.net). A Xylo build: the float source DeployGraph (source.npz, the
    layers and decays of manifest.json) with target set; its integer network is
    xylo_spec.npz, which the xylosim and emulator backends read (exporters/xylo.py).
    Raises BuildError if the directory is not a build, is incomplete or corrupt, or any of
    its files differs from the sha256 its manifest records (_read_manifest)."""
    b = Path(build_dir)
    m = _read_manifest(b)   # every file checked against its sha256 first
    try:
        if hw_targets.is_xylo(m.get("target")):
            return _load_xylo(b, m), m
        layers = []
        with h5py.File(b / "model.net", "r") as f:
            groups = [f[f"layer/{i}"] for i in range(len(f["layer"]))]
            groups = [g for g in groups if g["type"][0] in (b"dense", b"dense_rec", b"conv")]  # not input/flatten
            if len(groups) != len(m["layers"]):
                raise ValueError(f"model.net has {len(groups)} layers, manifest {len(m['layers'])}")
            for g, lm in zip(groups, m["layers"]):
                w = g["weight"][()].astype(np.int64)
                conv = lm.get("kind", "dense") == "conv"
                extra = {"kind": "conv", "in_shape": tuple(lm["in_shape"]), "stride": tuple(lm["stride"]),
                         "padding": tuple(lm["padding"])} if conv else {}
                for key, field in (("weight_rec", "recurrent"), ("bias", "bias")):
                    if key in g:
                        extra[field] = g[key][()].astype(np.int64)
                layers.append(Layer(
                    name=lm["name"], weight=w, threshold=np.ones(w.shape[0]),
                    i_decay=int(lm["i_decay"]), v_decay=int(lm["v_decay"]),
                    regulated=bool(lm["regulated"]), train_rate=lm["train_rate"],
                    vth=int(lm["vth_mant"]), weight_exp=int(lm["weight_exp"]),
                    weight_bits=int(lm["weight_bits"]), scale=lm["scale"], **extra))
        graph = DeployGraph(layers=tuple(layers), n_inputs=int(m["n_inputs"]), steps=int(m["steps"]),
                            dataset=m["dataset"], encoding=m["encoding"], method=m["method"],
                            source_sha256=m["source"]["sha256"],
                            float_accuracy=m.get("float_test_accuracy"), target=m["target"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise BuildError(f"{b}: build directory is incomplete or corrupt ({type(e).__name__}: {e})") from None
    return graph, m


def _load_xylo(b: Path, m: dict) -> DeployGraph:
    """A Xylo build's float graph: layer skeletons from manifest.json filled by load_source."""
    n_in = int(m["n_inputs"])
    layers = []
    for lm in m["layers"]:
        n = int(lm["n_out"])
        layers.append(Layer(name=lm["name"], weight=np.zeros((n, n_in)), threshold=np.ones(n),
                            i_decay=int(lm["i_decay"]), v_decay=int(lm["v_decay"]),
                            regulated=bool(lm["regulated"]), train_rate=lm["train_rate"],
                            recurrent=np.zeros((n, n)) if lm["recurrent"] else None,
                            bias=np.zeros(n) if lm["bias"] else None,
                            reset=str(lm.get("reset", "zero")), max_events=int(lm.get("max_events", 1))))
        n_in = n
    skeleton = DeployGraph(layers=tuple(layers), n_inputs=int(m["n_inputs"]), steps=int(m["steps"]),
                           dataset=m["dataset"], encoding=m["encoding"], method=m["method"],
                           source_sha256=m["source"]["sha256"], float_accuracy=m.get("float_test_accuracy"))
    graph = load_source(b, skeleton)
    if graph is None:
        raise ValueError(f"no {SOURCE}")
    return graph.with_(target=m["target"])


def _manifest_digest(m: dict) -> str:
    """sha256 (hex) of the manifest's content without its own digest "manifest_sha256":
    canonical JSON (sorted keys, separators "," and ":", ASCII), so it does not depend on
    how manifest.json is laid out, only on what it says."""
    rest = {k: v for k, v in m.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write_manifest(tmp: Path, manifest: dict) -> None:
    """Write manifest.json into the build directory being written (tmp), after every other
    file: "file_sha256" maps each of them (the manifest's "files") to the sha256 of its
    bytes, "manifest_sha256" is the manifest's own (_manifest_digest). Updates `manifest`
    in place. Files a command adds to a build later (run-*.json, spikes-*.npz, energy*,
    report.html) are its outputs, not part of the build: not digested, never read as the
    network (spike caches carry their own key of the network files, runs.py).
    Raises RuntimeError (a bug) if tmp holds other files than the manifest lists."""
    names = sorted(p.name for p in tmp.iterdir() if p.name != MANIFEST)
    if names != sorted(set(manifest["files"]) - {MANIFEST}):
        raise RuntimeError(f"build files {names} are not the manifest's {manifest['files']}")
    manifest["file_sha256"] = {n: checkpoint.sha256(tmp / n) for n in names}
    manifest["manifest_sha256"] = _manifest_digest(json.loads(json.dumps(manifest)))   # as read back
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _read_manifest(b: Path) -> dict:
    """manifest.json of build directory b, once it and every file it records (_write_manifest)
    match their sha256. The check finds damage (a flipped bit, a truncated or half-copied
    file) and edits by hand; it is no signature: whoever rewrites the digests too is not
    stopped. A build of version 1 recorded no digests and is refused, not read unchecked
    (the project is young: export it again). Raises BuildError, one line naming the file and
    the fix: not a build, manifest.json unreadable or not matching its digest, another
    version, a file missing, unreadable or not matching its digest."""
    p = b / MANIFEST
    if not p.is_file():
        raise BuildError(f"{b}: not a build directory (no {MANIFEST}); run ahsar-export first")
    try:
        m = json.loads(p.read_bytes())
        ok = isinstance(m, dict) and m.get("manifest_sha256") == _manifest_digest(m)
    except (OSError, ValueError, RecursionError) as e:   # a UnicodeDecodeError is a ValueError
        raise BuildError(f"{p}: damaged ({type(e).__name__}: {' '.join(str(e).split())[:100]}); "
                         f"{REEXPORT}") from None
    if isinstance(m, dict) and m.get("version") == 1 and "manifest_sha256" not in m:
        raise BuildError(f"{b}: a build of version 1, written before builds recorded the sha256 of their "
                         f"files; {REEXPORT}")
    if not ok:
        raise BuildError(f"{p}: damaged or edited since the export (its content does not match the sha256 "
                         f"it records); {REEXPORT}")
    if m.get("version") != BUILD_VERSION:
        raise BuildError(f"{b}: build version {m.get('version')!r:.20}; this ahsar-deploy reads version "
                         f"{BUILD_VERSION}: {REEXPORT}")
    digests = m.get("file_sha256")
    if not (isinstance(digests, dict) and all(isinstance(n, str) and n not in ("", "..") and Path(n).name == n
                                              and isinstance(d, str) for n, d in digests.items())):
        raise BuildError(f"{p}: file_sha256 is not a map of file names to sha256 digests; {REEXPORT}")
    for name, want in digests.items():
        try:
            got = checkpoint.sha256(b / name)
        except FileNotFoundError:
            raise BuildError(f"{b / name}: missing ({MANIFEST} records it); {REEXPORT}") from None
        except OSError as e:
            raise BuildError(f"{b / name}: unreadable ({e.strerror or e}); {REEXPORT}") from None
        if got != want:
            raise BuildError(f"{b / name}: damaged or edited since the export (its sha256 differs from the one "
                             f"{MANIFEST} records); {REEXPORT}")
    return m

def write_source(graph: DeployGraph, path: Path) -> None:
    """The float source model, for `ahsar run` to compare the build with: per layer i,
    weight_<i> (the layer's weight shape; float32 where that is exact, else float64),
    threshold_<i> (channels,) float64, and where the layer has them recurrent_<i>
    (n_out, n_out) and bias_<i> (n_out,) (float32 where exact), in an .npz (no pickled
    objects). Kinds, shapes and decays are the build's own (manifest.json)."""
    arrays = {}
    for i, l in enumerate(graph.layers):
        for key, a in (("weight", l.weight), ("recurrent", l.recurrent), ("bias", l.bias)):
            if a is not None:
                a = np.asarray(a, dtype=np.float64)
                arrays[f"{key}_{i}"] = a.astype(np.float32) if np.array_equal(a.astype(np.float32), a) else a
        arrays[f"threshold_{i}"] = np.asarray(l.threshold, dtype=np.float64)
    # np.savez stamps each member with the current time: a fixed stamp keeps builds identical
    with zipfile.ZipFile(path, "w") as z:
        for name, a in arrays.items():
            member = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_STORED   # float weights barely compress (3.1 -> 2.9 MB)
            with z.open(member, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)


def load_source(build_dir: str | Path, graph: DeployGraph) -> DeployGraph | None:
    """The float source model of a build (write_source) as a float DeployGraph with the
    layers of `graph` (the build, from load()); None for a build written before source.npz
    existed. Never unpickles. Raises BuildError if the file is damaged or does not fit."""
    p = Path(build_dir) / SOURCE
    if not p.is_file():
        return None
    try:
        layers = []
        with np.load(p, allow_pickle=False) as z:
            for i, l in enumerate(graph.layers):
                w = np.asarray(z[f"weight_{i}"], dtype=np.float64)
                th = np.asarray(z[f"threshold_{i}"], dtype=np.float64)
                if w.shape != l.weight.shape or th.shape != (l.channels,):
                    raise ValueError(f"{l.name}: weight {w.shape}, threshold {th.shape}; the build has "
                                     f"{l.weight.shape}, ({l.channels},)")
                if not (np.isfinite(w).all() and np.isfinite(th).all() and (th > 0).all()):
                    raise ValueError(f"{l.name}: non-finite weights or thresholds not above 0")
                extra = {}
                for key, ref in (("recurrent", l.recurrent), ("bias", l.bias)):
                    if (ref is None) != (f"{key}_{i}" not in z.files):
                        raise ValueError(f"{l.name}: {key} in the build and the source model differ")
                    if ref is not None:
                        a = np.asarray(z[f"{key}_{i}"], dtype=np.float64)
                        if a.shape != np.shape(ref) or not np.isfinite(a).all():
                            raise ValueError(f"{l.name}: {key} {a.shape}, the build has {np.shape(ref)}")
                        extra[key] = a
                layers.append(l.with_(weight=w, threshold=th, vth=None, weight_exp=0, scale=None, **extra))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BuildError(f"{p}: damaged ({' '.join(str(e).split())[:160]}); export the build again") from None
    return graph.with_(layers=tuple(layers), target=None)


def eval_inputs(graph: DeployGraph, dataset, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `samples` of the test split, encoded as the model was trained: (N, T, F)
    uint8 spikes and (N,) int64 labels. dataset: a built-in name or an .npz file (default
    the build's own; or a data.Dataset). Raises DeployError if the data do not fit the build."""
    name = dataset or graph.dataset
    if not name or name == data.IN_MEMORY:
        raise DeployError("this build was calibrated without a dataset on disk (a calibration file or "
                          "arrays): pass --data NAME|FILE.npz")
    if isinstance(name, str) and name in data.DATASETS and graph.dataset in data.DATASETS and name != graph.dataset:
        raise DeployError(f"dataset {name!r} does not match the build's {graph.dataset!r}")
    checks.run_args(samples=samples)
    ds = data.load(name)
    _fits(ds, graph, "the build")
    n = len(ds.test.y) if samples is None else min(samples, len(ds.test.y))
    return data.encode(ds.test.x[:n], graph.steps, graph.encoding), ds.test.y[:n]
