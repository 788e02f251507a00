"""Surrogate-gradient training of a CUBA-LIF MLP, with the AHSAR regulator as a plug-in."""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data as datamod
from .checkpoint import make_checkpoint
from .regulator import AHSARConfig
from .snn import SNN

log = logging.getLogger(__name__)


def evaluate(model: SNN, x: np.ndarray, y: np.ndarray, steps: int,
             batch: int = 256) -> tuple[float, float, list[float]]:
    """(loss, accuracy, per-layer mean firing rate) of the float model on a split."""
    model.eval()
    losses, correct, spikes_sum = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(datamod.encode(x[i:i + batch], steps)).float()
            yb = torch.from_numpy(y[i:i + batch])
            counts, spikes = model(xb)
            losses += float(F.cross_entropy(counts, yb, reduction="sum"))
            correct += int((counts.argmax(1) == yb).sum())
            sums = [float(s.sum()) for s in spikes]
            spikes_sum = sums if spikes_sum is None else [a + b for a, b in zip(spikes_sum, sums)]
    rates = [s / (len(x) * steps * n) for s, n in zip(spikes_sum, model.sizes[1:])]
    return losses / len(x), correct / len(x), rates


def train(data: str = "digits", method: str = "ahsar", arch: str = "mlp",
          hidden: tuple[int, ...] = (128, 64), steps: int = 16, epochs: int = 30,
          seed: int = 0, lr: float = 2e-3, batch: int = 64,
          ahsar: AHSARConfig | None = None, progress: bool = True) -> dict:
    """Train and return a checkpoint dict (see checkpoint.make_checkpoint)."""
    if arch != "mlp":
        raise ValueError(f"unknown architecture {arch!r}: this version trains 'mlp'")
    ds = datamod.load(data)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SNN([ds.n_features, *hidden, ds.n_classes], method=method, ahsar=ahsar)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    x_tr, y_tr = ds.train.x, ds.train.y
    enc_tr = torch.from_numpy(datamod.encode(x_tr, steps)).float()
    bar = tqdm(range(epochs), desc="train", unit="epoch", leave=False,
               disable=None if progress else True)   # None: only on a terminal
    for epoch in bar:
        model.train()
        order = rng.permutation(len(x_tr))
        total, n = 0.0, 0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            counts, _ = model(enc_tr[idx])
            loss = F.cross_entropy(counts, torch.from_numpy(y_tr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            n += len(idx)
        val_loss, val_acc, rates = evaluate(model, ds.val.x, ds.val.y, steps)
        entry = {"epoch": epoch + 1, "train_loss": total / n, "val_loss": val_loss,
                 "val_accuracy": val_acc, "rates": rates}
        if model.regulator is not None:
            reg = model.regulator
            reg.end_epoch(float(np.mean(rates[:-1])), val_loss, epoch + 1 < epochs)
            entry["scales"] = [float(v) for v in torch.exp(reg.log_s)]
            entry["gain"] = float(torch.exp(reg.log_g))
        history.append(entry)
        bar.set_postfix(loss=f"{total / n:.3f}", val_acc=f"{100 * val_acc:.1f}%")
        log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val acc %.2f %%  rates %s",
                 epoch + 1, epochs, total / n, val_loss, 100 * val_acc,
                 " ".join(f"{r:.3f}" for r in rates))
    _, test_acc, test_rates = evaluate(model, ds.test.x, ds.test.y, steps)
    log.info("float model test accuracy %.2f %% (%d samples)", 100 * test_acc, len(ds.test.y))
    return make_checkpoint(model, data=ds, steps=steps, seed=seed, history=history,
                           test_accuracy=test_acc, test_rates=test_rates)


