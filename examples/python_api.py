"""The Python API end to end on in-memory objects: a nir.NIRGraph built in code, numpy
arrays for calibration and test data, then ad.export -> ad.run -> ad.energy -> ad.inspect.
No file is read for the graph or the data; only the build directory is written.

    python examples/python_api.py                           # a few seconds
    python examples/python_api.py --samples 50 --out /tmp/api-build

Cells are separated by `# %%`: run them one by one in VS Code, Spyder or Jupyter
(jupytext), or the whole file at once. The last line is `RESULT {json}`.
"""
# %% Imports and options
import argparse
import json
import os
import tempfile

import nir
import numpy as np
from sklearn.datasets import load_digits

import ahsar_deploy as ad
from ahsar_deploy import data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--samples", type=int, default=None, help="test samples to run (default: all)")
parser.add_argument("--out", default=None, help="output folder, build in OUT/build (default: a temporary one)")
args, _ = parser.parse_known_args()        # parse_known_args: notebooks pass their own flags
T = 16                                     # time steps per sample

# %% Data as numpy arrays: 8x8 digits, intensities in [0, 1]
digits = load_digits()
x = digits.data / 16.0
y = digits.target.astype(np.int64)
order = np.random.default_rng(0).permutation(len(y))
train, test = order[:1400], order[1400:]
x_test, y_test = x[test][:args.samples], y[test][:args.samples]

# %% A one-layer spiking classifier, weights by ridge regression (no training framework)
# Ten integrate-and-fire neurons; neuron c integrates W[c] . x_t each step and spikes
# when v > 2 (then v <- 0), so the most driven class spikes most often.
# The ridge term keeps the weights small and even, so Loihi's 8-bit weights hold them well.
xt, targets = x[train], np.eye(10)[y[train]]
w = np.linalg.solve(xt.T @ xt + 1.0 * np.eye(64), xt.T @ targets)   # (64, 10)
weight = w.T                                                    # NIR: (out, in)
graph = nir.NIRGraph(
    nodes={"input": nir.Input(input_type=np.array([64])),
           "fc": nir.Linear(weight=weight),
           "spikes": nir.IF(r=np.ones(10), v_threshold=np.full(10, 2.0)),
           "output": nir.Output(output_type=np.array([10]))},
    edges=[("input", "fc"), ("fc", "spikes"), ("spikes", "output")])
numpy_acc = float(np.mean((x_test @ w).argmax(1) == y_test))  # the same classifier, no spikes
print(f"ridge classifier (no spikes): {numpy_acc:.2%}")

# %% Calibration data: (N, T, F) 0/1 spikes, rate-coded as the chip will be fed
calib = data.encode(x[train][:300], T)        # their T sets the build's time steps
print("calibration spikes:", calib.shape, calib.dtype)

# %% Export for Loihi (fold, calibrate the integer grid, write the build directory)
build = os.path.join(args.out or tempfile.mkdtemp(prefix="ahsar-api-"), "build")
manifest = ad.export(graph, "loihi", build, calib=calib, force=True)
print(f"build: {build}, {manifest['steps']} steps, {manifest['cores']} core(s)")

# %% Run on the bit-exact integer emulator: intensities are rate-coded like the calibration
result = ad.run(build, x_test, y_test)
print(f"emulator: {result['accuracy']:.2%} on {result['samples']} samples; float model of the "
      f"graph {result['source']['accuracy']:.2%}")

# %% Energy per inference from the spikes the emulator produced
report = ad.energy(build, x_test, backend="emulator")   # backend None: Lava
print(f"energy on {report['target']}: {report['dynamic_j_per_inference'] * 1e9:.1f} nJ per inference dynamic, "
      f"{report['total_j_per_inference'] * 1e9:.1f} nJ with static power")
print(f"sparsity check: {[row['status'] for row in report['sparsity_check']]} "
      "(no training rate in a hand-written graph: nothing to check against)")

# %% Inspect the build: its manifest (layers, integer thresholds, decays, cores)
info = ad.inspect(build)
for layer in info["layers"]:
    print(f"layer {layer['name']}: {layer['n_in']} -> {layer['n_out']}, vth {layer['vth_mant']}, "
          f"v_decay {layer['v_decay']}")

# %%
print("RESULT " + json.dumps({
    "numpy_accuracy": numpy_acc, "emulator_accuracy": result["accuracy"],
    "float_accuracy": result["source"]["accuracy"], "samples": result["samples"],
    "steps": info["steps"], "layers": len(info["layers"]),
    "energy_nj": report["total_j_per_inference"] * 1e9, "dynamic_nj": report["dynamic_j_per_inference"] * 1e9,
    "build": build}))
