"""Bring your own norse network: train it in your own loop with AHSAR attached, export it
with norse.torch.to_nir and deploy it to Loihi.

    python examples/norse_ahsar_loihi.py                    # about a minute on 2 cores
    python examples/norse_ahsar_loihi.py --epochs 3 --out /tmp/norse-build

The network is 64-64-32-10 norse LIFBoxCell neurons (a LIF without synaptic current):
    v <- v + dt * tau_mem_inv * (I - v),  spike when v > v_th,  then v <- 0.
What makes it deployable: v_leak = v_reset = 0, nn.Linear(bias=False), per-neuron
parameter tensors, and dt * tau_mem_inv = 1e-3 * 125 = 512/4096, a decay Loihi holds
exactly. to_nir writes tau = dt * (1 / tau_mem_inv) and records dt nowhere, so
ad.export is told how to read it: nir_tau="norse" (to_nir's default dt, 1 ms; a graph
written with to_nir(..., dt=DT) takes nir_tau=f"norse:{DT}").
The last line is `RESULT {json}` with the key numbers.
"""
import argparse
import json
import os
import tempfile

import norse.torch as norse
import numpy as np
import torch
import torch.nn.functional as F

import ahsar_deploy as ad
from ahsar_deploy import data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=15, help="training epochs")
parser.add_argument("--steps", type=int, default=16, help="time steps per sample")
parser.add_argument("--out", default=None, help="output folder, build in OUT/build (default: a temporary one)")
args = parser.parse_args()
T = args.steps
torch.manual_seed(0)


def lif(n, v_th):
    # Surrogate gradient "tanh" (1 - tanh(20 (v - v_th))**2, about 0.05 wide): norse 1.1's
    # default "super" ignores alpha and is 1 wide in v, too wide for thresholds of 0.06.
    return norse.LIFBoxCell(norse.LIFBoxParameters(
        tau_mem_inv=torch.full((n,), 125.0), v_th=torch.full((n,), v_th),
        v_leak=torch.zeros(n), v_reset=torch.zeros(n), method="tanh", alpha=torch.tensor(20.0)))


# Each step adds 1/8 of the input current to v, so thresholds are 1/8 of snnTorch's.
net = norse.SequentialState(
    torch.nn.Linear(64, 64, bias=False), lif(64, 0.0625),
    torch.nn.Linear(64, 32, bias=False), lif(32, 0.0625),
    torch.nn.Linear(32, 10, bias=False), lif(10, 0.125))       # readout: spike counts


def run(x):
    """x (B, T, 64) spikes -> output spikes (B, T, 10); the state starts at zero per batch."""
    state, out = None, []
    for t in range(x.shape[1]):
        spikes, state = net(x[:, t], state)
        out.append(spikes)
    return torch.stack(out, dim=1)


# Digits (8x8 images), rate-coded exactly as the deployed network will be fed (data.encode).
ds = data.load("digits")
x_train, y_train = torch.tensor(data.encode(ds.train.x, T)).float(), torch.tensor(ds.train.y)
x_val, y_val = torch.tensor(data.encode(ds.val.x, T)).float(), torch.tensor(ds.val.y)
x_test, y_test = torch.tensor(data.encode(ds.test.x, T)).float(), torch.tensor(ds.test.y)

# AHSAR on both hidden LIFBoxCells (attach() leaves the last one, the readout, alone).
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

# Rates on the test data (the deployment checks them), then fold the thresholds into p.v_th.
test_pred = att.measure(lambda: run(x_test).sum(1).argmax(1))
rates = att.rates()
att.detach()
norse_acc = (test_pred == y_test).sum().item() / len(y_test)
print(f"norse: test accuracy {norse_acc:.2%}, hidden rates {[round(r, 3) for r in rates]}")

# Export to NIR (one unbatched sample), mark the regulated layers, deploy for Loihi as
# they are (qat="off", refit=False: no fine-tuning of your weights on the integer grid).
graph = ad.annotate_nir(norse.to_nir(net, torch.zeros(64)), att)
out = os.path.join(args.out or tempfile.mkdtemp(prefix="ahsar-norse-"), "build")
ad.export(graph, "loihi", out, data="digits", steps=T, nir_tau="norse", force=True, qat="off", refit=False)

# Run the test split on the bit-exact integer emulator, compare with norse, price it.
result = ad.run(out, data="digits", reference=test_pred.numpy())
report = ad.energy(out, data="digits", backend="emulator")   # the spikes of the run above
emulator_acc = result["accuracy"]
print(f"Loihi emulator: {emulator_acc:.2%} (norse {norse_acc:.2%}, difference "
      f"{100 * (emulator_acc - norse_acc):+.2f} pp; same prediction on "
      f"{result['reference']['agreement']:.2%} of the samples)")
print(f"energy: {report['dynamic_j_per_inference'] * 1e9:.1f} nJ per inference dynamic, "
      f"{report['total_j_per_inference'] * 1e9:.1f} nJ with static power; report {out}/energy.md")
for row in report["sparsity_check"]:   # layers are named after their Linear's NIR node
    print(f"  layer {row['layer']}: rate {row['rate']:.3f} on the chip, {row['status']}")

print("RESULT " + json.dumps({
    "norse_accuracy": norse_acc, "emulator_accuracy": emulator_acc,
    "difference_pp": 100 * (emulator_acc - norse_acc), "nir_float_accuracy": result["source"]["accuracy"],
    "agreement": result["reference"]["agreement"], "samples": result["samples"],
    "hidden_rates": rates, "deployed_rates": [r["rate"] for r in report["sparsity_check"]],
    "sparsity": [r["status"] for r in report["sparsity_check"]],
    "energy_nj": report["total_j_per_inference"] * 1e9, "dynamic_nj": report["dynamic_j_per_inference"] * 1e9,
    "build": out}))
