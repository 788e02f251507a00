"""The export flow (import -> fold -> calibrate -> check -> emit) and reading a build.

A build directory is written into a temporary sibling and renamed into place only when
complete, so a failed or interrupted export leaves no partial build and an existing
build stays intact until the new one is whole.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

import hw_targets
from exporters import lava as lava_exporter
from exporters import nir as nir_exporter

from . import checkpoint, data, emulator
from .errors import BuildError, DeployError
from .ir import DeployGraph, Layer
from .passes.calibrate import calibrate
from .passes.check import check
from .passes.fold import fold

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def _accuracy(graph: DeployGraph, x: np.ndarray, y: np.ndarray, integer: bool) -> float:
    out = emulator.run(graph, data.encode(x, graph.steps), integer=integer)[-1]
    return float(np.mean(out.sum(axis=1).argmax(axis=1) == y))


def _layer_manifest(l: Layer) -> dict:
    m = {"name": l.name, "kind": l.kind, "n_in": l.n_in, "n_out": l.n_out,
         "vth_mant": l.vth, "weight_exp": l.weight_exp, "weight_bits": l.weight_bits,
         "i_decay": l.i_decay, "v_decay": l.v_decay, "du": l.i_decay - 1, "dv": l.v_decay,
         "reset": l.reset, "scale": l.scale, "regulated": l.regulated,
         "train_rate": l.train_rate}
    if l.kind == "conv":
        m.update({"in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
                  "kernel": list(l.weight.shape[2:]), "stride": list(l.stride),
                  "padding": list(l.padding)})
    return m


def import_graph(model: str | Path, dataset: str | None = None, steps: int | None = None,
                 dt_s: float | None = None, nir_tau: str = "seconds") -> DeployGraph:
    """Import stage: a checkpoint (model.pt) or a NIR graph (*.nir) -> float DeployGraph.
    dataset, steps, dt_s and nir_tau apply to NIR graphs (which carry no dataset)."""
    if Path(model).suffix.lower() == ".nir":
        from exporters import nir_import
        return nir_import.to_graph(model, dataset=dataset, steps=steps, dt_s=dt_s, tau_convention=nir_tau)
    if any(v is not None for v in (steps, dt_s)):
        raise DeployError(f"{model}: --steps and --dt apply to .nir inputs; a checkpoint carries its own")
    graph = checkpoint.to_graph(model)
    if dataset is not None and dataset != graph.dataset:
        raise DeployError(f"{model}: trained on {graph.dataset!r}, not {dataset!r}")
    return graph


def export(model: str | Path, target_name: str, out_dir: str | Path, force: bool = False,
           calib_samples: int = 256, progress: bool = True, dataset: str | None = None,
           steps: int | None = None, dt_s: float | None = None, nir_tau: str = "seconds") -> dict:
    target = hw_targets.get(target_name)
    out = Path(out_dir)
    if out.exists() and not force:
        raise BuildError(f"{out}: exists; pass --force to replace it")
    if out.exists() and not (out / MANIFEST).is_file():
        raise BuildError(f"{out}: exists and is not a build directory; not replacing it")
    graph = import_graph(model, dataset, steps, dt_s, nir_tau)
    folded = fold(graph)
    ds = data.load(graph.dataset)
    if ds.n_features != graph.n_inputs:
        raise BuildError(f"{model}: expects {graph.n_inputs} inputs, dataset {ds.name} has {ds.n_features}")
    calib = data.encode(ds.train.x[:calib_samples], graph.steps)
    qgraph, reports = calibrate(folded, calib, target, progress=progress)
    qgraph = check(qgraph, target)
    acc = {"float": _accuracy(graph, ds.val.x, ds.val.y, False),
           "folded": _accuracy(folded, ds.val.x, ds.val.y, False),
           "quantized": _accuracy(qgraph, ds.val.x, ds.val.y, True)}
    for r in reports:
        log.info("calibrate %s: scale %.2f vth %d, spike agreement %.4f (%d changed), %d weights clipped",
                 r.name, r.scale, r.vth, r.spike_agreement, r.spikes_changed, r.weights_clipped)
    log.info("validation accuracy: float %.2f %%, folded %.2f %%, quantized %.2f %%",
             *(100 * acc[k] for k in ("float", "folded", "quantized")))
    manifest = {
        "format": "ahsar-deploy.build", "version": 1, "target": target.name,
        "source": {"file": Path(model).name, "sha256": graph.source_sha256},
        "method": graph.method, "dataset": graph.dataset, "encoding": graph.encoding,
        "steps": graph.steps, "n_inputs": graph.n_inputs, "cores": qgraph.notes["cores"],
        "float_test_accuracy": graph.float_accuracy,
        "layers": [_layer_manifest(l) for l in qgraph.layers],
        "files": ["model.nir", "model.net", "calibration.json", MANIFEST],
    }
    if "import" in graph.notes:
        manifest["import"] = graph.notes["import"]
    calibration = {"calibration_samples": len(calib), "split": "train[:%d]" % len(calib),
                   "validation_accuracy": acc, "layers": [asdict(r) for r in reports]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        nir_exporter.write(qgraph, tmp / "model.nir")
        lava_exporter.write_netx(qgraph, tmp / "model.net")
        (tmp / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(new: Path, out: Path) -> None:
    """Rename new into out; an existing out is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{new.name[-8:]}")
        out.rename(old)
        new.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(out)


def load(build_dir: str | Path) -> tuple[DeployGraph, dict]:
    """Read a build back into an integer DeployGraph (weights from model.net)."""
    b = Path(build_dir)
    if not (b / MANIFEST).is_file():
        raise BuildError(f"{b}: not a build directory (no {MANIFEST}); run ahsar-export first")
    try:
        m = json.loads((b / MANIFEST).read_text())
        layers = []
        with h5py.File(b / "model.net", "r") as f:
            groups = [f[f"layer/{i}"] for i in range(len(f["layer"]))]
            groups = [g for g in groups if g["type"][0] in (b"dense", b"conv")]  # not input/flatten
            if len(groups) != len(m["layers"]):
                raise ValueError(f"model.net has {len(groups)} layers, manifest {len(m['layers'])}")
            for g, lm in zip(groups, m["layers"]):
                w = g["weight"][()].astype(np.int64)
                conv = lm.get("kind", "dense") == "conv"
                extra = {"kind": "conv", "in_shape": tuple(lm["in_shape"]), "stride": tuple(lm["stride"]),
                         "padding": tuple(lm["padding"])} if conv else {}
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


def eval_inputs(graph: DeployGraph, dataset: str | None, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `samples` of the test split, encoded as the model was trained."""
    name = dataset or graph.dataset
    if name != graph.dataset:
        raise DeployError(f"dataset {name!r} does not match the build's {graph.dataset!r}")
    ds = data.load(name)
    n = len(ds.test.y) if samples is None else min(samples, len(ds.test.y))
    if n <= 0:
        raise DeployError(f"--samples must be positive, got {samples}")
    return data.encode(ds.test.x[:n], graph.steps), ds.test.y[:n]
