"""A NIR graph from another library: a sinabs IAF network, trained briefly, written with
sinabs.to_nir and deployed to Loihi with ad.export.

    python examples/nir_from_sinabs.py                      # about 10 s on 2 cores
    python examples/nir_from_sinabs.py --epochs 1 --out /tmp/sinabs-build

sinabs' defaults (several spikes per step, reset by subtraction) have no NIR field, and
a NIR IF node deploys as: one spike when v > threshold, then v <- 0. So the IAF layers
here are built with spike_fn=SingleSpike and reset_fn=MembraneReset(), which is that
neuron (sinabs spikes on v >= threshold: the same except where v equals it exactly).
IF has no time constant, so the graph deploys at any dt (ad.export's default, 1 ms).
The last line is `RESULT {json}` with the key numbers.
"""
import argparse
import json
import os
import tempfile

import sinabs
import sinabs.layers as sl
import torch
import torch.nn.functional as F
from sinabs.activation import MembraneReset, SingleSpike

import ahsar_deploy as ad
from ahsar_deploy import data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=8, help="training epochs")
parser.add_argument("--out", default=None, help="output folder, build in OUT/build (default: a temporary one)")
args = parser.parse_args()
T = 16
torch.manual_seed(0)


def iaf(threshold):
    return sl.IAF(spike_threshold=threshold, spike_fn=SingleSpike, reset_fn=MembraneReset())


# 64-64-10 integrate-and-fire network; sinabs layers take (batch, time, features).
net = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False), iaf(1.0),
                          torch.nn.Linear(64, 10, bias=False), iaf(1.0))

ds = data.load("digits")
x_train, y_train = torch.tensor(data.encode(ds.train.x, T)).float(), torch.tensor(ds.train.y)
x_test, y_test = torch.tensor(data.encode(ds.test.x, T)).float(), torch.tensor(ds.test.y)

opt = torch.optim.Adam(net.parameters(), lr=2e-3)
for epoch in range(args.epochs):
    order = torch.randperm(len(y_train))
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        sinabs.reset_states(net)                     # every sample starts from v = 0
        loss = F.cross_entropy(net(x_train[idx]).sum(1), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch + 1}: train loss {loss.item():.3f}")

with torch.no_grad():
    sinabs.reset_states(net)
    sinabs_pred = net(x_test).sum(1).argmax(1)
sinabs_acc = (sinabs_pred == y_test).sum().item() / len(y_test)
print(f"sinabs: test accuracy {sinabs_acc:.2%}")

# sinabs.to_nir reads each layer's shape from its state, so run one sample first; a
# sample of one time step gives the Input node the shape (1, 64), and the importer drops the 1.
sinabs.reset_states(net)
sample = torch.zeros(1, 1, 64)
net(sample)
graph = sinabs.to_nir(net, sample)
print("NIR nodes:", {name: type(node).__name__ for name, node in graph.nodes.items()})

out = os.path.join(args.out or tempfile.mkdtemp(prefix="ahsar-sinabs-"), "build")
ad.export(graph, "loihi", out, data="digits", steps=T, force=True, qat="off", refit=False)
result = ad.run(out, data="digits", reference=sinabs_pred.numpy())
emulator_acc = result["accuracy"]
print(f"Loihi emulator: {emulator_acc:.2%} (sinabs {sinabs_acc:.2%}); same prediction as sinabs on "
      f"{result['reference']['agreement']:.2%} of {result['samples']} samples")

print("RESULT " + json.dumps({
    "sinabs_accuracy": sinabs_acc, "emulator_accuracy": emulator_acc,
    "difference_pp": 100 * (emulator_acc - sinabs_acc), "nir_float_accuracy": result["source"]["accuracy"],
    "agreement": result["reference"]["agreement"], "samples": result["samples"],
    "nodes": sorted(type(n).__name__ for n in graph.nodes.values()), "build": out}))
