"""Short quantization-aware fine-tune of a folded float graph (issue 5, optional).

Each layer's weights are trained through the rounding the calibration chose: in the
forward pass W is replaced by its grid value clip(step*round(k*W/step))/k and the
threshold by vth/k (the integer threshold in float units), with a straight-through
gradient (d round(x)/dx := 1; Bengio et al., arXiv 1308.3432). The float network then
learns around its own rounding; calibration runs again afterwards. Dense layers only
(convolutions keep their calibrated grid). Recurrent weights are trained through the same
grid as the layer's feed-forward ones (snn.py CubaLIF.rec), a bias through its own,
round(k*b)/k clipped to the 13-bit mantissa (passes/calibrate.py quantize_layer).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from hw_targets import LoihiTarget

from .. import interrupts
from ..ir import DeployGraph
from ..snn import CubaLIF

log = logging.getLogger(__name__)


class _FakeQuant(nn.Module):
    def __init__(self, k: float, target: LoihiTarget):
        super().__init__()
        self.k, self.t = k, target

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.t
        q = (torch.round(w * self.k / t.weight_step) * t.weight_step).clamp(t.weight_min, t.weight_max) / self.k
        return w + (q - w).detach()          # straight-through


class _FakeQuantBias(_FakeQuant):
    def forward(self, b: torch.Tensor) -> torch.Tensor:
        q = (torch.round(b * self.k).clamp(-self.t.bias_max, self.t.bias_max)) / self.k
        return b + (q - b).detach()


def finetune(folded: DeployGraph, quantized: DeployGraph, x: np.ndarray, y: np.ndarray,
             target: LoihiTarget, epochs: int = 1, lr: float = 2e-4, batch: int = 64,
             seed: int = 0, progress: bool = False) -> DeployGraph:
    """Fine-tune the folded graph's dense weights with the calibrated grid in the loop.

    folded: float graph, threshold 1 per layer; quantized: its calibration (scale, vth).
    x: (N, T, F) input spikes, y: (N,) labels. Returns a folded float graph.
    Raises ValueError for a graph with convolutions (build.py does not ask for it).
    """
    if any(l.kind != "dense" for l in folded.layers):
        # the fake-quant loop below builds nn.Linear for every layer; a conv layer would crash it
        raise ValueError("qat: networks with convolutions are not fine-tuned yet")
    rng = np.random.default_rng(seed)     # batch order; weights are copied, not drawn
    mods = []
    for lf, lq in zip(folded.layers, quantized.layers):
        syn = nn.Linear(lf.n_in, lf.n_out, bias=False).double()
        with torch.no_grad():
            syn.weight.copy_(torch.from_numpy(lf.weight))
        m = CubaLIF(syn, lf.n_out, lf.i_decay, lf.v_decay, recurrent=lf.recurrent is not None,
                    bias=lf.bias is not None).double()
        m.theta_base.fill_(lq.vth / lq.scale)              # integer threshold in float units
        parametrize.register_parametrization(syn, "weight", _FakeQuant(lq.scale, target))
        with torch.no_grad():
            if m.rec is not None:
                m.rec.weight.copy_(torch.from_numpy(np.asarray(lf.recurrent, dtype=np.float64)))
                parametrize.register_parametrization(m.rec, "weight", _FakeQuant(lq.scale, target))
            if m.bias is not None:
                m.bias.copy_(torch.from_numpy(np.asarray(lf.bias, dtype=np.float64)))
                parametrize.register_parametrization(m, "bias", _FakeQuantBias(lq.scale, target))
        mods.append(m)
    params = [p for m in mods for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    xt, yt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))   # copies: data files are read-only maps
    for epoch in range(epochs):
        order = rng.permutation(len(y))
        total = 0.0
        for i in tqdm(range(0, len(order), batch), desc=f"qat {epoch + 1}/{epochs}", leave=False,
                      disable=None if progress else True):
            interrupts.check()
            h = xt[order[i:i + batch]].double()
            for m in mods:
                h = m(h)
            loss = F.cross_entropy(h.sum(dim=1), yt[order[i:i + batch]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(order[i:i + batch])
        log.info("qat epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(y))
    layers = []
    original = lambda mod, name: getattr(mod.parametrizations, name).original.detach().numpy().copy()  # noqa: E731
    for lf, m in zip(folded.layers, mods):
        layers.append(lf.with_(weight=original(m.syn, "weight"),
                               recurrent=None if m.rec is None else original(m.rec, "weight"),
                               bias=None if m.bias is None else original(m, "bias")))
    return folded.with_(layers=tuple(layers))
