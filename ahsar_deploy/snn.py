"""Feed-forward CUBA-LIF network whose discrete-time update is Loihi's, in float.

Per step, for a layer with integer decays i_decay, v_decay in [0, 4096] (Loihi's
12-bit decay registers; lava/proc/lif/models.py, ../shared/HARDWARE.md section 1):

    u[t] = (1 - i_decay/4096) * u[t-1] + W x[t]
    v[t] = (1 - v_decay/4096) * v[t-1] + u[t]
    s[t] = v[t] > theta          (strict, as Lava's fixed-point LIF)
    v[t] = 0 where s[t]          (reset to zero; u is not reset)

The fixed-point version truncates the decay products toward zero and scales state by
64 (threshold << 6); see ahsar_deploy/emulator.py. The readout is the spike count of
the last layer. Training uses a fast-sigmoid surrogate gradient on (v - theta)/theta.
"""
from __future__ import annotations

import torch
from torch import nn

from .regulator import AHSAR, AHSARConfig

METHODS = ("baseline", "ahsar")


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad / (1 + 5.0 * z.abs()) ** 2


class CubaLIFDense(nn.Module):
    """Dense synapses into CUBA-LIF neurons, reset to zero, no bias."""

    def __init__(self, n_in: int, n_out: int, i_decay: int, v_decay: int, theta: float = 1.0):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out, bias=False)
        self.i_decay = int(i_decay)
        self.v_decay = int(v_decay)
        self.register_buffer("theta_base", torch.full((n_out,), float(theta)))

    def forward(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """x: (B, T, n_in) -> spikes (B, T, n_out); theta broadcasts to (n_out,)."""
        cur = self.fc(x)
        du = 1.0 - self.i_decay / 4096.0
        dv = 1.0 - self.v_decay / 4096.0
        u = torch.zeros_like(cur[:, 0])
        v = torch.zeros_like(u)
        out = []
        for t in range(cur.shape[1]):
            u = du * u + cur[:, t]
            v = dv * v + u
            s = _Spike.apply((v - theta) / theta)
            v = v * (1.0 - s.detach())
            out.append(s)
        return torch.stack(out, dim=1)


class SNN(nn.Module):
    """MLP of CubaLIFDense layers; hidden layers regulated by AHSAR when enabled."""

    def __init__(self, sizes: list[int], i_decay: int = 1024, v_decay: int = 512,
                 method: str = "ahsar", ahsar: AHSARConfig | None = None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
        if len(sizes) < 2:
            raise ValueError("an SNN needs at least an input and an output size")
        self.sizes = list(sizes)
        self.method = method
        self.layers = nn.ModuleList(
            CubaLIFDense(a, b, i_decay, v_decay) for a, b in zip(sizes[:-1], sizes[1:]))
        n_hidden = len(self.layers) - 1
        self.regulator = AHSAR(n_hidden, ahsar) if method == "ahsar" and n_hidden else None

    def thresholds(self) -> list[torch.Tensor]:
        """Effective per-neuron thresholds theta_base_l * G * s_l (readout: theta_base)."""
        out = []
        scales = self.regulator.scales() if self.regulator is not None else None
        for l, layer in enumerate(self.layers):
            th = layer.theta_base
            if scales is not None and l < len(self.layers) - 1:
                th = th * scales[l].to(th.dtype)
            out.append(th)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, T, F) spikes -> (spike counts of the readout (B, C), spikes per layer)."""
        spikes = []
        h = x
        for layer, th in zip(self.layers, self.thresholds()):
            h = layer(h, th.to(h.dtype))
            spikes.append(h)
        if self.regulator is not None and self.training:
            self.regulator.observe([float(s.detach().mean()) for s in spikes[:-1]])
        return spikes[-1].sum(dim=1), spikes
