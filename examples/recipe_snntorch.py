"""The README's snnTorch recipe, whole: it runs as pasted (tests/test_examples.py runs it
and checks the README's copy is this file). About 10 s on 2 cores; writes ./build."""
import numpy as np
import snntorch
import torch
import torch.nn.functional as F
from snntorch import utils
from snntorch.export_nir import export_to_nir

import ahsar_deploy as ad
from ahsar_deploy import data

T = 16
leaky = lambda n, th, **kw: snntorch.Leaky(beta=torch.full((n,), 0.875), threshold=torch.full((n,), th),
                                           reset_mechanism="zero", init_hidden=True, **kw)
net = torch.nn.Sequential(torch.nn.Linear(64, 64), leaky(64, 0.5),
                          torch.nn.Linear(64, 32), leaky(32, 0.5),
                          torch.nn.Linear(32, 10), leaky(10, 1.0, output=True))


def counts(x):                       # x (B, T, 64) spikes -> output spike counts (B, 10)
    utils.reset(net)                 # output=True: the last Leaky returns (spikes, membrane)
    return sum(net(x[:, t])[0] for t in range(x.shape[1]))


ds = data.load("digits")
x, y = torch.tensor(data.encode(ds.train.x, T)).float(), torch.tensor(ds.train.y)   # the chip's rate code
x_val, y_val = torch.tensor(data.encode(ds.val.x, T)).float(), torch.tensor(ds.val.y)
att = ad.attach(net)                 # AHSAR on every hidden Leaky; the readout is left alone
opt = torch.optim.Adam(net.parameters(), lr=2e-3)
for epoch in range(4):
    for i in range(0, len(y), 32):
        loss = F.cross_entropy(counts(x[i:i + 32]), y[i:i + 32])
        opt.zero_grad(); loss.backward(); opt.step()
        att.step()                   # one AHSAR observation per batch
    val_loss = att.measure(lambda: F.cross_entropy(counts(x_val), y_val).item())
    att.end_epoch(float(np.mean(att.rates())), val_loss, epoch < 3)
x_test = torch.tensor(data.encode(ds.test.x, T)).float()
pred = att.measure(lambda: counts(x_test).argmax(1))   # the rates the deployment will check
att.detach()                         # the regulated thresholds stay in the modules
graph = ad.annotate_nir(export_to_nir(net, torch.zeros(64)), att)   # one unbatched sample
graph.metadata["reset"] = "zero"     # NIR cannot say it; without it the import warns
ad.export(graph, "loihi", "build", data="digits", steps=T, qat="off", refit=False, force=True)
result = ad.run("build", data="digits", reference=pred.numpy())   # emulator, bit-exact with Lava
print(f"snnTorch {np.mean(pred.numpy() == ds.test.y):.2%}, Loihi {result['accuracy']:.2%}, "
      f"same prediction on {result['reference']['agreement']:.2%}")
for row in ad.energy("build", data="digits")["sparsity_check"]:   # the hidden rates, checked on the chip
    print(f"layer {row['layer']}: {row['rate']:.3f} on the chip, {row['train_rate'] or 0:.3f} in training, {row['status']}")
