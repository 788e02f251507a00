"""NIR export: the deployed network as a standard NIR graph (neuromorphs/NIR 1.0).

Nodes: Input -> (Linear -> CubaLIF) per layer -> Output. A Loihi step of length dt
is NIR's forward-Euler CubaLIF step (NIR docs, nir/ir/neuron.py CubaLIF):
  I += dt/tau_syn * (-I + w_in * W x)   with tau_syn = dt / (i_decay/4096), w_in = tau_syn/dt
  v += dt/tau_mem * (v_leak - v + r*I)  with tau_mem = dt / (v_decay/4096), r = tau_mem/dt
so I and v follow Loihi's u and v; the threshold is 1 in folded units (weights
W_int / vth after calibration). Loihi updates v with the new u in the same step; the
graph metadata says so. Integer parameters ride in node metadata.
"""
from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from ahsar_deploy.ir import DeployGraph

DT_S = 1e-3


def to_nir(graph: DeployGraph) -> nir.NIRGraph:
    nodes = {"input": nir.Input(input_type=np.array([graph.n_inputs]))}
    edges = []
    prev = "input"
    for i, l in enumerate(graph.layers):
        n = l.n_out
        th = float(l.threshold[0]) if l.vth is None else float(l.vth)
        w = np.asarray(l.weight, dtype=np.float64) * 2.0 ** l.weight_exp / th
        a_i, a_v = l.i_decay / 4096.0, l.v_decay / 4096.0
        tau_syn = DT_S / a_i if a_i > 0 else np.inf
        tau_mem = DT_S / a_v if a_v > 0 else np.inf
        meta = {"i_decay": l.i_decay, "v_decay": l.v_decay, "reset": l.reset,
                "regulated": int(l.regulated)}
        if l.vth is not None:
            meta.update({"vth_mant": l.vth, "weight_exp": l.weight_exp, "weight_bits": l.weight_bits,
                         "weight_int": np.asarray(l.weight, dtype=np.int32)})
        nodes[f"fc{i}"] = nir.Linear(weight=w.astype(np.float32), metadata={"layer": l.name})
        nodes[f"lif{i}"] = nir.CubaLIF(
            tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
            r=np.full(n, tau_mem / DT_S if a_v > 0 else 1.0), v_leak=np.zeros(n),
            v_threshold=np.ones(n), v_reset=np.zeros(n),
            w_in=np.full(n, tau_syn / DT_S if a_i > 0 else 1.0), metadata=meta)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(output_type=np.array([graph.layers[-1].n_out]))
    edges.append((prev, "output"))
    meta = {"dt_s": DT_S, "steps": graph.steps, "target": graph.target or "float",
            "discretization": "loihi: u then v with the new u, spike if v > threshold, v <- 0",
            "source_sha256": graph.source_sha256, "producer": "ahsar-deploy"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write(graph: DeployGraph, path: str | Path) -> None:
    nir.write(str(path), to_nir(graph))
