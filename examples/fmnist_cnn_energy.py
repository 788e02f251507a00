"""A convolutional spiking network on Fashion-MNIST: train with AHSAR, deploy to Loihi,
run it, and write the energy report.

    python examples/fmnist_cnn_energy.py                    # about a minute on 2 cores
    python examples/fmnist_cnn_energy.py --train-samples 500 --epochs 1 --samples 100

Network (this project's trainer, arch "cnn"): 28x28 input -> conv 5x5 (8 channels) ->
2x2 sum pool -> conv 5x5 (16) -> 2x2 sum pool -> dense 10, CUBA-LIF neurons, 8 time
steps of rate-coded input, AHSAR on the hidden layers. Fashion-MNIST comes from the
Debian package dataset-fashion-mnist (`make install`); without it this script says so
and exits. The last line is `RESULT {json}` with the key numbers.
"""
import argparse
import json
import logging
import tempfile
from pathlib import Path

import ahsar_deploy as ad
from ahsar_deploy import checkpoint, data
from ahsar_deploy.train import train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=2, help="training epochs")
parser.add_argument("--train-samples", type=int, default=10000, help="training images used (of 55000)")
parser.add_argument("--samples", type=int, default=1000, help="test images to run (of 10000)")
parser.add_argument("--out", default=None, help="output folder, build in OUT/build (default: a temporary one)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")   # the library logs its progress

try:
    fmnist = data.load("fmnist")
except ad.DeployError as err:                   # not installed: say how, and stop cleanly
    print(f"Fashion-MNIST is not installed: {err}")
    print("RESULT " + json.dumps({"skipped": "Fashion-MNIST not installed"}))
    raise SystemExit(0)

# A quick run uses part of the data: first N training, 500 validation and --samples test
# images, as numpy arrays (N, 1, 28, 28) so the network sees images. ad.* take the same
# Dataset value wherever a data name would go.
n, m = args.train_samples, args.samples
subset = data.from_arrays(fmnist.train.x[:n].reshape(-1, 1, 28, 28), fmnist.train.y[:n],
                          fmnist.test.x[:m].reshape(-1, 1, 28, 28), fmnist.test.y[:m],
                          fmnist.val.x[:500].reshape(-1, 1, 28, 28), fmnist.val.y[:500])
work = Path(args.out or tempfile.mkdtemp(prefix="ahsar-fmnist-"))
work.mkdir(parents=True, exist_ok=True)

# 1. Train the CNN (the checkpoint records architecture, thresholds, AHSAR state and rates).
ckpt = train(data=subset, method="ahsar", arch="cnn", channels=(8, 16), hidden=(), steps=8,
             epochs=args.epochs, seed=0, progress=False)
checkpoint.save(ckpt, work / "model.pt")

# 2. Export for Loihi: conv layers become Loihi conv processes, pooling is fused into the
#    next layer's weights; calibration uses 256 training images.
build = work / "build"
manifest = ad.export(work / "model.pt", "loihi", build, data=subset, force=True, calib_samples=256)
print(f"exported {len(manifest['layers'])} layers on {manifest['cores']} Loihi cores to {build}")

# 3. Run the test images on the bit-exact integer emulator.
result = ad.run(build, data=subset)
print(f"emulator: {result['accuracy']:.2%} on {result['samples']} test images "
      f"(float model: {result['source']['accuracy']:.2%})")

# 4. Energy: energy.json, energy.md (tables) and energy.png (plots) in the build directory.
report = ad.energy(build, data=subset, backend="emulator")   # backend None: Lava
print(f"energy on {report['target']}: {report['dynamic_j_per_inference'] * 1e9:.1f} nJ per inference dynamic, "
      f"{report['total_j_per_inference'] * 1e9:.1f} nJ with static power, "
      f"{report['synaptic_ops_per_inference']:.0f} synaptic operations")
print(f"energy report: {build / 'energy.md'}")
print(f"energy plot:   {build / 'energy.png'}")

print("RESULT " + json.dumps({
    "float_accuracy": result["source"]["accuracy"], "emulator_accuracy": result["accuracy"],
    "samples": result["samples"], "cores": manifest["cores"],
    "energy_nj": report["total_j_per_inference"] * 1e9, "dynamic_nj": report["dynamic_j_per_inference"] * 1e9,
    "synaptic_ops": report["synaptic_ops_per_inference"],
    "rates": [row["rate"] for row in report["sparsity_check"]],
    "sparsity": [row["status"] for row in report["sparsity_check"]],
    "energy_md": str(build / "energy.md"), "energy_png": str(build / "energy.png")}))
