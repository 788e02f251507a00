"""Quickstart: train a spiking network with AHSAR on scikit-learn's digits, deploy it to
Loihi, run it and estimate its energy.

    python examples/digits_quickstart.py                  # under a minute on 2 cores
    python examples/digits_quickstart.py --epochs 2 --samples 40 --lava

Steps: ahsar_deploy.train.train (this project's trainer: CUBA-LIF layers, AHSAR threshold
regulation) -> checkpoint file -> ad.export (fold thresholds, calibrate Loihi's integer
grid, write build/) -> ad.run (bit-exact integer emulator; --lava: Lava's Loihi
simulation too) -> ad.energy (energy per inference from the spikes the chip produced).
The last line is `RESULT {json}` with the key numbers.
"""
import argparse
import json
import logging
import tempfile
from pathlib import Path

import ahsar_deploy as ad
from ahsar_deploy import checkpoint
from ahsar_deploy.train import train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=15, help="training epochs")
parser.add_argument("--train-samples", type=int, default=None, help="use only the first N training samples")
parser.add_argument("--samples", type=int, default=None, help="test samples to run (default: all 360)")
parser.add_argument("--out", default=None, help="output folder, build in OUT/build (default: a temporary one)")
parser.add_argument("--lava", action="store_true", help="also run Lava's Loihi simulation (slower)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")   # the library logs its progress

work = Path(args.out or tempfile.mkdtemp(prefix="ahsar-quickstart-"))
work.mkdir(parents=True, exist_ok=True)

# 1. Train: a 64-128-64-10 network, 16 time steps of rate-coded input, AHSAR on the hidden layers.
ckpt = train(data="digits", method="ahsar", arch="mlp", hidden=(128, 64), steps=16,
             epochs=args.epochs, train_samples=args.train_samples, seed=0, progress=False)
model_file = work / "model.pt"
checkpoint.save(ckpt, model_file)
print(f"float model: test accuracy {ckpt['test_accuracy']:.2%}, hidden rates "
      f"{[round(r, 3) for r in ckpt['test_rates'][:-1]]}")

# 2. Export for Loihi: writes build/ (model.nir, model.net for lava-dl netx, manifest.json, reports).
build = work / "build"
manifest = ad.export(model_file, "loihi", build, force=True)
print(f"exported to {build}")

# 3. Run the test split on the bit-exact integer emulator; it also runs the float model
#    on the same samples ("source"), so the two accuracies compare like with like.
emu = ad.run(build, samples=args.samples)
print(f"emulator: {emu['accuracy']:.2%} on {emu['samples']} samples "
      f"(float model on the same samples: {emu['source']['accuracy']:.2%})")
lava_acc = lava_same = None
if args.lava:
    lava = ad.run(build, samples=args.samples, backend="lava")
    lava_acc, lava_same = lava["accuracy"], lava["predictions"] == emu["predictions"]
    print(f"Lava: {lava_acc:.2%}, same predictions as the emulator: {lava_same}")

# 4. Energy per inference from the spikes of the run above (reuses run-lava.json or
#    run-emulator.json; the two hold the same spikes).
report = ad.energy(build, samples=args.samples, backend="lava" if args.lava else "emulator")
print(f"energy on {report['target']}: {report['dynamic_j_per_inference'] * 1e9:.0f} nJ per inference dynamic, "
      f"{report['total_j_per_inference'] * 1e9:.0f} nJ with static power; an int8 ANN of the same "
      f"shape: {report['ann_baseline']['int8_j'] * 1e9:.1f} nJ (arithmetic only)")
print(f"energy report: {build / 'energy.md'}, plot: {build / 'energy.png'}")
for row in report["sparsity_check"]:
    print(f"  layer {row['layer']}: rate {row['rate']:.3f} -> {row['status']}")

result = {
    "float_accuracy": emu["source"]["accuracy"],
    "emulator_accuracy": emu["accuracy"],
    "agreement": emu["source"]["prediction_agreement"],
    "lava_accuracy": lava_acc,
    "lava_same_predictions": lava_same,
    "samples": emu["samples"],
    "energy_nj": report["total_j_per_inference"] * 1e9,
    "dynamic_nj": report["dynamic_j_per_inference"] * 1e9,
    "ann_int8_nj": report["ann_baseline"]["int8_j"] * 1e9,
    "rates": [row["rate"] for row in report["sparsity_check"]],
    "sparsity": [row["status"] for row in report["sparsity_check"]],
    "build": str(build),
}
print("RESULT " + json.dumps(result))
