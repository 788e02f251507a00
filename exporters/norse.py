"""Norse backend: the float reference of a build, run from model.nir by norse.torch.from_nir.

norse builds each NIR CubaLIF as LIBoxCell -> LIFBoxCell, i.e. the discretisation of
exporters/nir.py (I first, then v with the new I), so it runs the float model of the
deployed network (emulator.float_view: integer weights and thresholds, decays without
Loihi's truncation), here in float64. norse stores parameters in float32; model.nir's
numbers (dt = 2**-10 s, power-of-two decays, integer weights) survive that exactly, so
the spikes equal emulator.float_view's, ties at the threshold included. Decays that are
not powers of two (e.g. 819/4096) give 1/tau inexactly, and a tie may then split.

A layer without voltage leak (v_decay 0) is an IF node in model.nir (i_decay 4096), which
norse runs as IAFCell (v += input, per step: exact), or LI -> IF (i_decay < 4096), which
norse's from_nir cannot run (it maps no LI node): such a build is refused with a
BackendError naming the layer, rather than run wrongly. So is a CubaLIF whose bias is
written as v_leak (exporters/nir.py, a layer with a voltage leak and a bias): norse's
from_nir feeds v_leak into the synaptic current as well, a different model.

NIR types carry no batch dimension, so a Flatten with start_dim=0 flattens one sample;
norse hands start_dim to torch.nn.Flatten unchanged, which would flatten the batch too.
We run batched and shift each Flatten's start_dim by one (the batch dimension).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ahsar_deploy import interrupts
from ahsar_deploy.errors import BackendError
from ahsar_deploy.ir import DeployGraph


def load_module(nir_path: str | Path):
    import nir
    import norse.torch
    import torch
    from norse.torch.module.iaf import IAFCell
    from norse.torch.utils.import_nir import CubaLIF
    graph = nir.read(str(nir_path))
    for k, node in graph.nodes.items():
        if isinstance(node, nir.LI):
            layer = node.metadata.get("layer", k) if isinstance(node.metadata, dict) else k
            raise BackendError(f"norse: layer {layer!r} (node {k!r}) has a synaptic current but no voltage "
                               "leak (v_decay 0), written to model.nir exactly as LI -> IF, and norse's "
                               "from_nir cannot run an LI node; use --backend emulator or lava")
        if isinstance(node, nir.CubaLIF) and np.any(np.asarray(node.v_leak) != 0):
            layer = node.metadata.get("layer", k) if isinstance(node.metadata, dict) else k
            raise BackendError(f"norse: layer {layer!r} (node {k!r}) has a bias written as v_leak, which "
                               "norse's from_nir also adds to the synaptic current (norse/torch/utils/"
                               "import_nir.py), so it would run another model; use --backend emulator or lava")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)     # nirtorch's deprecation notice for norse's load()
    try:
        module = norse.torch.from_nir(graph, dt=float(graph.metadata.get("dt_s", 1e-3)))
    finally:
        root.setLevel(level)
    module = module.double()
    for m in module.modules():
        if isinstance(m, torch.nn.Flatten):
            m.start_dim += 1
    succ = dict(graph.edges)          # a chain: one successor per node
    order, node = [], "input"
    while node in succ and len(order) <= len(graph.nodes):
        node = succ[node]
        if isinstance(graph.nodes[node], (nir.CubaLIF, nir.IF)):
            order.append(node)
    cells = [dict(module.named_modules())[k] for k in order]
    if not all(isinstance(c, (CubaLIF, IAFCell)) for c in cells):
        raise BackendError(f"norse: {nir_path} did not map every CubaLIF / IF to norse's CubaLIF / IAFCell")
    in_shape = tuple(int(v) for v in graph.nodes["input"].input_type["input"])
    return module, cells, in_shape


def run_nir(nir_path: str | Path, spikes: np.ndarray) -> list[np.ndarray]:
    """Per-layer spikes (N, T, n) of the NIR graph on input spikes (N, T, F)."""
    import torch
    module, cells, in_shape = load_module(nir_path)
    n, t_steps = spikes.shape[:2]
    rec: list[list] = [[] for _ in cells]
    hooks = [c.register_forward_hook(lambda mod, inp, out, i=i: rec[i].append(out[0].reshape(n, -1)))
             for i, c in enumerate(cells)]
    x = torch.from_numpy(np.asarray(spikes, dtype=np.float64)).reshape(n, t_steps, *in_shape)
    state = None
    try:
        with torch.no_grad():
            for t in range(t_steps):
                interrupts.check()
                _, state = module(x[:, t], state)
    finally:
        for h in hooks:
            h.remove()
    return [torch.stack(r, dim=1).numpy() > 0 for r in rec]


def run(build_dir: str | Path, graph: DeployGraph, spikes: np.ndarray) -> list[np.ndarray]:
    path = Path(build_dir) / "model.nir"
    if not path.is_file():
        raise BackendError(f"norse: {path} missing; re-export the build")
    try:
        return run_nir(path, spikes)
    except BackendError:
        raise
    except Exception as e:
        raise BackendError(f"norse: could not run {path} ({type(e).__name__}: {e})") from None
