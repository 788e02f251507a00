"""Bring your own snnTorch network: train it in your own loop with AHSAR attached, export
it with snnTorch's export_to_nir and deploy it to Loihi.

    python examples/snntorch_ahsar_loihi.py                 # about a minute on 2 cores
    python examples/snntorch_ahsar_loihi.py --epochs 3 --out /tmp/snntorch-build

The network is 64-64-32-10 snntorch.Leaky neurons. What makes it deployable:
- reset_mechanism="zero": Loihi resets the membrane to 0 after a spike (snnTorch's
  default, "subtract", has no NIR field and would deploy differently);
- nn.Linear(bias=False): no bias on this path;
- per-neuron beta and threshold tensors: export_to_nir cannot type scalar parameters;
- beta = 0.875 = 1 - 512/4096, a decay Loihi's 12-bit register holds exactly.
export_to_nir writes dt = 1e-4 s; ad.export reads that dt from the graph itself.
The last line is `RESULT {json}` with the key numbers.
"""
import argparse
import json
import os
import tempfile

import numpy as np
import snntorch
import torch
import torch.nn.functional as F
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir

import ahsar_deploy as ad
from ahsar_deploy import data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=15, help="training epochs")
parser.add_argument("--steps", type=int, default=16, help="time steps per sample")
parser.add_argument("--out", default=None, help="output folder, build in OUT/build (default: a temporary one)")
args = parser.parse_args()
T, BETA = args.steps, 0.875
torch.manual_seed(0)


def leaky(n, threshold, output=False):
    return snntorch.Leaky(beta=torch.full((n,), BETA), threshold=torch.full((n,), threshold),
                          reset_mechanism="zero", init_hidden=True, output=output)


net = torch.nn.Sequential(
    torch.nn.Linear(64, 64, bias=False), leaky(64, 0.5),
    torch.nn.Linear(64, 32, bias=False), leaky(32, 0.5),
    torch.nn.Linear(32, 10, bias=False), leaky(10, 1.0, output=True))   # readout: spike counts


def run(x):
    """x (B, T, 64) spikes -> output spikes (B, T, 10): one call per time step."""
    snn_utils.reset(net)
    return torch.stack([net(x[:, t])[0] for t in range(x.shape[1])], dim=1)


# Digits (8x8 images), rate-coded exactly as the deployed network will be fed (data.encode).
ds = data.load("digits")
x_train, y_train = torch.tensor(data.encode(ds.train.x, T)).float(), torch.tensor(ds.train.y)
x_val, y_val = torch.tensor(data.encode(ds.val.x, T)).float(), torch.tensor(ds.val.y)
x_test, y_test = torch.tensor(data.encode(ds.test.x, T)).float(), torch.tensor(ds.test.y)

# AHSAR on both hidden Leaky layers (attach() leaves the last one, the readout, alone).
att = ad.attach(net)
opt = torch.optim.Adam(net.parameters(), lr=2e-3)
for epoch in range(args.epochs):
    net.train()
    order = torch.randperm(len(y_train))
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        loss = F.cross_entropy(run(x_train[idx]).sum(1), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        att.step()                                   # one AHSAR observation per batch
    val_loss = att.measure(lambda: F.cross_entropy(run(x_val).sum(1), y_val).item())
    att.end_epoch(float(np.mean(att.rates())), val_loss, epoch + 1 < args.epochs)
    print(f"epoch {epoch + 1}: val loss {val_loss:.3f}, hidden rates {[round(r, 3) for r in att.rates()]}")

# Rates on the test data (the deployment checks them), then fold the thresholds in.
test_pred = att.measure(lambda: run(x_test).sum(1).argmax(1))
rates = att.rates()
att.detach()
snntorch_acc = (test_pred == y_test).sum().item() / len(y_test)
print(f"snnTorch: test accuracy {snntorch_acc:.2%}, hidden rates {[round(r, 3) for r in rates]}")

# Export to NIR (one unbatched sample), mark the regulated layers, deploy for Loihi.
# qat="off", refit=False: deploy these weights as they are (the library's defaults may
# fine-tune them on the integer grid, and then the chip runs another model than yours).
graph = ad.annotate_nir(export_to_nir(net, torch.zeros(64)), att)
graph.metadata["reset"] = "zero"   # trained with reset_mechanism="zero": say so (NIR has no field for it)
out = os.path.join(args.out or tempfile.mkdtemp(prefix="ahsar-snntorch-"), "build")
ad.export(graph, "loihi", out, data="digits", steps=T, force=True, qat="off", refit=False)

# Run the test split on the bit-exact integer emulator; `reference` compares its
# predictions with snnTorch's, "source" is the imported float graph on the same samples.
result = ad.run(out, data="digits", reference=test_pred.numpy())
report = ad.energy(out, data="digits", backend="emulator")   # the spikes of the run above
emulator_acc = result["accuracy"]
print(f"Loihi emulator: {emulator_acc:.2%} (snnTorch {snntorch_acc:.2%}, difference "
      f"{100 * (emulator_acc - snntorch_acc):+.2f} pp; same prediction on "
      f"{result['reference']['agreement']:.2%} of the samples)")
print(f"energy: {report['dynamic_j_per_inference'] * 1e9:.1f} nJ per inference dynamic, "
      f"{report['total_j_per_inference'] * 1e9:.1f} nJ with static power; report {out}/energy.md")
for row in report["sparsity_check"]:   # layers are named after their Linear's NIR node
    print(f"  layer {row['layer']}: rate {row['rate']:.3f} on the chip, {row['status']}")

print("RESULT " + json.dumps({
    "snntorch_accuracy": snntorch_acc, "emulator_accuracy": emulator_acc,
    "difference_pp": 100 * (emulator_acc - snntorch_acc), "nir_float_accuracy": result["source"]["accuracy"],
    "agreement": result["reference"]["agreement"], "samples": result["samples"],
    "hidden_rates": rates, "deployed_rates": [r["rate"] for r in report["sparsity_check"]],
    "sparsity": [r["status"] for r in report["sparsity_check"]],
    "energy_nj": report["total_j_per_inference"] * 1e9, "dynamic_nj": report["dynamic_j_per_inference"] * 1e9,
    "build": out}))
