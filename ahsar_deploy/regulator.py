"""AHSAR: Adaptive Homeostatic Spiking Activity Regulation (this project's formulation).

Source: Chen et al., "Plug-and-Play Homeostatic Spark: Zero-Cost Acceleration for SNN
Training Across Paradigms", arXiv 2512.05015 (2025). Only the abstract is public; the
exact rule below is our own formulation, written in ../shared/METHODS.md section 1.

The regulator has no trainable parameters. It keeps per regulated (hidden) layer l a
homeostatic state h_l and a threshold scale s_l, and one global gain G; the effective
threshold is theta_base_l * G * s_l. Scales are updated under no_grad after each
training forward pass and used by the next, so gradients and loss are untouched.
In eval mode nothing changes (like BatchNorm running statistics).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn


@dataclass(frozen=True)
class AHSARConfig:
    r_lo: float = 0.05          # target band of firing rates (spikes per neuron per step)
    r_hi: float = 0.25
    mu: float = 0.9             # homeostatic state: h <- mu*h + (1-mu)*r
    diffusion: float = 0.25     # D: e~_l = (1-D) e_l + D mean(e of regulated neighbours)
    control: str = "integral"   # "integral" | "proportional"
    eta_s: float = 0.02         # integral step on log s
    k: float = 1.0              # slope inside tanh
    s_max: float = 4.0          # S: log s clipped to [log s_min, log S]
    s_min: float = 0.25         # lower bound of s (1/S for the default S); 1: s never below 1 ("raise-only")
    energy: float = 0.0         # lambda in [0, 1]: setpoint c - lambda*w (0: band centre, 1: r_lo)
    a: float = math.log(1.5)    # proportional: s = exp(a * tanh(k e~))
    eta_g: float = 0.05         # global gain step
    g_min: float = 0.8          # log G clipped to [log g_min, log g_max]
    g_max: float = 1.25

    @property
    def centre(self) -> float:
        return (self.r_lo + self.r_hi) / 2

    @property
    def half_width(self) -> float:
        return (self.r_hi - self.r_lo) / 2

    @property
    def setpoint(self) -> float:
        """The rate the regulation steers to: c - energy * w (the band centre when energy
        is 0, its lower edge r_lo when 1)."""
        return self.centre - self.energy * self.half_width

    @classmethod
    def from_dict(cls, d: dict) -> "AHSARConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown AHSAR config fields: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def items(cls, spec: str) -> dict[str, str]:
        """``"KEY=VALUE,KEY=VALUE"`` -> {KEY: VALUE} (strings), empty items skipped.
        ValueError, one line, for an item without '=', an unknown key or a key given twice."""
        known = [f.name for f in fields(cls)]
        out: dict[str, str] = {}
        for item in (i.strip() for i in spec.split(",")):
            if not item:
                continue
            key, eq, val = (t.strip() for t in item.partition("="))
            if not eq or key not in known:
                raise ValueError(f"AHSAR setting {item!r}: expected KEY=VALUE, items separated by commas, "
                                 f"with KEY one of {', '.join(known)}")
            if key in out:
                raise ValueError(f"AHSAR setting {key} given twice ({key}={out[key]} and {key}={val}): keep one")
            out[key] = val
        return out

    @classmethod
    def parse(cls, spec: str, base: "AHSARConfig | None" = None) -> "AHSARConfig":
        """``"KEY=VALUE,KEY=VALUE"`` (`ahsar train --ahsar-set`): the fields named, over ``base``
        (default: the default config). Values are finite numbers, and ``control`` integral or
        proportional. ValueError, one line, for an unknown or repeated key, a bad value or
        a bad item (items(), check())."""
        changes = {}
        for key, val in cls.items(spec).items():
            if key == "control":
                changes[key] = val
                continue
            try:
                changes[key] = float(val)
            except ValueError:
                raise ValueError(f"AHSAR setting {key}={val}: {key} takes a number") from None
        out = replace(base or cls(), **changes)
        out.check()
        return out

    def settings(self) -> str | None:
        """The fields that differ from the defaults, control apart, as `--ahsar-set`'s
        KEY=VALUE,... in field order (repr of each number, a trailing '.0' dropped); None
        when every such field is the default. parse(settings()) gives this config back."""
        base = AHSARConfig().to_dict()
        diff = [f"{k}={repr(float(v)).removesuffix('.0')}" for k, v in self.to_dict().items()
                if k != "control" and v != base[k]]
        return ",".join(diff) or None

    def summary(self) -> str | None:
        """The whole `--ahsar-set` string that gives this config: settings(), led by
        control=proportional when the control mode is not the default (integral); None for
        the default config. parse(summary()) gives this config back (`ahsar inspect`, the
        training log)."""
        control = None if self.control == AHSARConfig.control else f"control={self.control}"
        return ",".join(filter(None, [control, self.settings()])) or None

    def check(self) -> None:
        """ValueError, one line, unless the fields make a working rule: every number finite,
        0 < r_lo < r_hi, 0 <= mu < 1, 0 <= diffusion <= 1, control integral|proportional,
        0 < s_min <= 1 <= s_max, 0 <= energy <= 1, 0 < g_min <= 1 <= g_max, and eta_s, k,
        a, eta_g >= 0."""
        numbers = [f.name for f in fields(self) if f.name != "control"]
        bad = [f"{n}={getattr(self, n)!r} is not a finite number" for n in numbers
               if not (isinstance(getattr(self, n), (int, float)) and math.isfinite(getattr(self, n)))]
        if bad:
            raise ValueError("AHSAR config: " + "; ".join(bad))
        if not 0 < self.r_lo < self.r_hi:
            bad.append(f"band r_lo={self.r_lo:g}, r_hi={self.r_hi:g} needs 0 < r_lo < r_hi")
        if not 0 <= self.mu < 1:
            bad.append(f"mu={self.mu:g} outside [0, 1)")
        if not 0 <= self.diffusion <= 1:
            bad.append(f"diffusion={self.diffusion:g} outside [0, 1]")
        if self.control not in ("integral", "proportional"):
            bad.append(f"control={self.control!r}: integral or proportional")
        if not 0 < self.s_min <= 1 <= self.s_max:
            bad.append(f"scale bounds s_min={self.s_min:g}, s_max={self.s_max:g} need 0 < s_min <= 1 <= s_max")
        if not 0 <= self.energy <= 1:
            bad.append(f"energy={self.energy:g} outside [0, 1]")
        if not 0 < self.g_min <= 1 <= self.g_max:
            bad.append(f"gain bounds g_min={self.g_min:g}, g_max={self.g_max:g} need 0 < g_min <= 1 <= g_max")
        bad += [f"{n}={getattr(self, n):g} is negative" for n in ("eta_s", "k", "a", "eta_g")
                if getattr(self, n) < 0]
        if bad:
            raise ValueError("AHSAR config: " + "; ".join(bad))


class AHSAR(nn.Module):
    """Per-layer homeostatic threshold scales; buffers only, no parameters."""

    def __init__(self, n_layers: int, config: AHSARConfig | None = None):
        super().__init__()
        self.config = config or AHSARConfig()
        self.config.check()
        n = n_layers
        self.register_buffer("h", torch.full((n,), self.config.setpoint, dtype=torch.float64))
        self.register_buffer("log_s", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("log_g", torch.zeros((), dtype=torch.float64))
        self.register_buffer("best_val_loss", torch.full((), math.inf, dtype=torch.float64))

    @property
    def n_layers(self) -> int:
        return self.h.numel()

    def scales(self) -> torch.Tensor:
        """G * s_l per regulated layer (float64)."""
        return torch.exp(self.log_g + self.log_s)

    def deviations(self) -> torch.Tensor:
        """Centred deviations after cross-layer diffusion, e~_l."""
        c = self.config
        e = (self.h - c.setpoint) / c.half_width
        n = e.numel()
        out = e.clone()
        for l in range(n):
            nb = [e[j] for j in (l - 1, l + 1) if 0 <= j < n]
            if nb:
                out[l] = (1 - c.diffusion) * e[l] + c.diffusion * torch.stack(nb).mean()
        return out

    @torch.no_grad()
    def observe(self, rates: list[float] | torch.Tensor) -> None:
        """After a training forward pass: fold the batch rates r_l into h_l, update s_l."""
        if not self.training:
            return
        c = self.config
        r = torch.as_tensor(rates, dtype=torch.float64).reshape(-1)
        if r.numel() != self.n_layers:
            raise ValueError(f"AHSAR expects {self.n_layers} layer rates, got {r.numel()}")
        self.h.mul_(c.mu).add_((1 - c.mu) * r)
        drive = torch.tanh(c.k * self.deviations())
        if c.control == "integral":
            self.log_s.copy_((self.log_s + c.eta_s * drive).clamp(math.log(c.s_min), math.log(c.s_max)))
        else:   # the scale bounds hold here too (the defaults never bind: a = ln 1.5 < ln S)
            self.log_s.copy_((c.a * drive).clamp(math.log(c.s_min), math.log(c.s_max)))

    @torch.no_grad()
    def end_epoch(self, val_rate: float, val_loss: float, another_epoch_follows: bool) -> None:
        """Global gain, once per epoch after validation (METHODS.md 1)."""
        c = self.config
        best = float(self.best_val_loss)
        if another_epoch_follows:
            if math.isinf(best):
                progress = 1.0
            elif best == 0:   # (a user's loss through regulate.py may reach 0): any drop is progress
                progress = 1.0 if val_loss < 0 else 0.0
            else:             # |L_best|: a loss that may be negative still counts a drop as progress
                progress = min(max((best - val_loss) / (0.01 * abs(best)), 0.0), 1.0)
            step = c.eta_g * (1 - progress) * math.tanh((val_rate - c.setpoint) / c.half_width)
            self.log_g.copy_(torch.clamp(self.log_g + step, math.log(c.g_min), math.log(c.g_max)))
        self.best_val_loss.fill_(min(best, val_loss))
