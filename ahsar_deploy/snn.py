"""CUBA-LIF networks (feed-forward or with recurrent hidden layers) whose discrete-time
update is Loihi's, in float.

Per step, for a layer with integer decays i_decay, v_decay in [0, 4096] (Loihi's
12-bit decay registers; lava/proc/lif/models.py, ../shared/HARDWARE.md section 1):

    u[t] = (1 - i_decay/4096) * u[t-1] + W x[t] + R s[t-1]   (W: dense or convolution)
    v[t] = (1 - v_decay/4096) * v[t-1] + u[t] + b
    s[t] = v[t] > theta          (strict, as Lava's fixed-point LIF)
    v[t] = 0 where s[t]          (reset to zero; u is not reset)

R (n_out, n_out): the optional recurrent weights of a dense layer (its own spikes, one
step late; s[-1] = 0); b (n_out,): the optional per-neuron bias (Loihi's neuron bias),
in the same units as W and theta. Both absent: R = 0, b = 0. These are exactly the
fields `recurrent` and `bias` of ir.Layer.

The fixed-point version truncates the decay products toward zero and scales state by
64 (threshold << 6); see ahsar_deploy/emulator.py. The readout is the spike count of
the last layer.

Threshold methods (../shared/METHODS.md) plug into the same layers; `method` is one of
METHODS, and "+ahsar" adds the AHSAR regulator (regulator.py) on top of any of them:
- baseline: fixed threshold theta_base (a buffer); fast-sigmoid surrogate on (v-theta)/theta.
- rouser: theta_base is a trainable per-neuron parameter (per output channel for a
  convolution, so it folds into shared kernels), init 1.25; surrogate
  ds/dV = (1.5/3.75) exp(-|V - theta|/3.75) (Takaghaj & Sampson, arXiv 2407.19566).
- hoyer: hidden layers spike when u = v/|v_th| >= E, E = sum(u_c^2)/sum(u_c) the
  Hoyer extremum of u_c = clip(u, 0, 1) over the batch's activation map, v_th a trainable
  per-layer clip threshold; at inference E is its running mean (momentum 0.1), frozen.
  Straight-through gradient for 0 <= u <= 1, Hoyer regulariser lambda*H(u_c) with
  lambda = 1e-8 (Datta et al., arXiv 2212.10170; godatta/Ultra-Low-Latency-SNN).
  The readout keeps a fixed threshold (the paper's last layer is not a Hoyer layer).
With AHSAR the effective threshold of a hidden layer is (method's threshold) * G * s_l.

Neuron models (`neuron`, NEURONS; ahsar train --neuron): "loihi" (the default) is the
model above, reset to zero and at most one spike per step. "xylo" is Xylo Audio 2's
(exporters/xylo.py module docstring, step 4; xylosim src/v2/cpp/XyloIAFNeuron.cpp): with
the same u and v updates, a neuron emits n events per step and resets by subtraction,

    n[t] = clamp(floor(v[t] / theta), 0, cap),   v[t] -= n[t] * theta

(the chip's "while v >= threshold and n < cap: n += 1, v -= threshold"), cap 31 for
hidden layers and 1 for the readout (Xylo's output neurons). The next layer (and R)
receive the count n[t], each event with its weight. Gradient: the method's surrogate
of the first event (fast sigmoid of (v - theta)/theta, or rouser's) carries it,
straight through to the count: n = s + (n - s).detach(). Rates are then events per
neuron per step (what AHSAR regulates, its band included). Dense layers (mlp, rnn)
with baseline or rouser thresholds (+ahsar) only: hoyer and convolutions are refused.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ir import conv_out_hw
from .regulator import AHSAR, AHSARConfig

BASES = ("baseline", "rouser", "hoyer")
METHODS = ("baseline", "ahsar", "rouser", "rouser+ahsar", "hoyer", "hoyer+ahsar")
ROUSER_INIT, ROUSER_S, ROUSER_TAU = 1.25, 1.5, 3.75
HOYER_MOMENTUM, HOYER_LAMBDA = 0.1, 1e-8
# neuron model -> reset, event cap per step of hidden layers and of the readout
NEURONS = {"loihi": {"reset": "zero", "max_events": 1, "readout_max_events": 1},
           "xylo": {"reset": "subtract", "max_events": 31, "readout_max_events": 1}}


def split_method(method: str) -> tuple[str, bool]:
    """'rouser+ahsar' -> ('rouser', True); 'ahsar' -> ('baseline', True)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "ahsar":
        return "baseline", True
    base, _, reg = method.partition("+")
    return base, reg == "ahsar"


class _Heaviside(torch.autograd.Function):
    """Heaviside(z) forward; subclasses set the surrogate derivative dS/dz."""
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)


class _FastSigmoid(_Heaviside):
    """d/dz = 1/(1 + 5|z|)^2; z = (v - theta)/theta."""
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad / (1 + 5.0 * z.abs()) ** 2


class _RouserSpike(_Heaviside):
    """d/dz = (s/tau) exp(-|z|/tau); z = V - theta (METHODS.md 2)."""
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (ROUSER_S / ROUSER_TAU) * torch.exp(-z.abs() / ROUSER_TAU)


class _HoyerSpike(torch.autograd.Function):
    """u >= E forward; gradient passed straight through where 0 <= u <= 1 (METHODS.md 3)."""
    @staticmethod
    def forward(ctx, u, e):
        ctx.save_for_backward(u)
        return (u >= e).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * ((u >= 0) & (u <= 1)).to(grad.dtype), None


class CubaLIF(nn.Module):
    """Synapses (dense or convolution, no bias) into CUBA-LIF neurons, reset to zero.

    Buffers/parameters: theta_base (per neuron, per channel for convolutions; a
    parameter for rouser), and for hoyer v_th (trainable) and e_run (running extremum).
    Dense layers only: recurrent=True adds `rec`, an nn.Linear(n, n) from the layer's
    spikes at t-1 into its current at t (torch's default init); bias=True adds `bias`,
    a trainable (n,) tensor added to v every step (init 0). Raises ValueError for either
    on a convolution.
    reset "subtract" with max_events (1..31): Xylo's multi-event neuron (module docstring,
    dense layers, not hoyer); "zero" (max_events 1): reset to zero, one spike per step.
    keep_v (attribute, default False): when True, forward keeps ``v_trace``, one tensor
    (B, *out) per step of the membrane before spike and reset in units of the threshold
    (v / theta; hoyer: v over its inference threshold), detached.
    """

    def __init__(self, syn: nn.Module, n_theta: int, i_decay: int, v_decay: int,
                 base: str = "baseline", hoyer: bool = False, recurrent: bool = False,
                 bias: bool = False, reset: str = "zero", max_events: int = 1):
        super().__init__()
        if (recurrent or bias) and not isinstance(syn, nn.Linear):
            raise ValueError("recurrent weights and biases are for dense layers only")
        if not ((reset == "zero" and max_events == 1) or (
                reset == "subtract" and 1 <= max_events <= 31 and isinstance(syn, nn.Linear) and not hoyer)):
            raise ValueError(f"reset {reset!r} with up to {max_events} events per step: supported are "
                             f"'zero' with 1, and 'subtract' with 1..31 on dense, non-hoyer layers")
        self.reset = reset
        self.keep_v = False   # set by a caller (benchmarks/robustness.py): forward keeps v_trace
        self.max_events = int(max_events)
        self.syn = syn
        self.rec = nn.Linear(n_theta, n_theta, bias=False) if recurrent else None
        self.bias = nn.Parameter(torch.zeros(n_theta)) if bias else None
        self.i_decay = int(i_decay)
        self.v_decay = int(v_decay)
        self.base = base
        self.hoyer = hoyer
        theta = torch.full((n_theta,), ROUSER_INIT if base == "rouser" else 1.0)
        if base == "rouser":
            self.theta_base = nn.Parameter(theta)
        else:
            self.register_buffer("theta_base", theta)
        if hoyer:
            self.v_th = nn.Parameter(torch.ones(()))
            self.register_buffer("e_run", torch.ones(()))
        self.hoyer_loss = torch.zeros(())

    @property
    def is_conv(self) -> bool:
        return isinstance(self.syn, nn.Conv2d)

    def threshold(self, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Deployed (eval) threshold per neuron or channel: theta_base [* |v_th| E_run] * scale."""
        th = self.theta_base * scale
        if self.hoyer:
            th = th * self.v_th.abs() * self.e_run
        return th

    def forward(self, x: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """x: (B, T, *in) -> spikes (B, T, *out); scale = AHSAR's G * s_l (a constant)."""
        b, steps = x.shape[:2]
        cur = self.syn(x.reshape(b * steps, *x.shape[2:]))
        cur = cur.reshape(b, steps, *cur.shape[1:])
        shape = (-1,) + (1,) * (cur.dim() - 3)      # per channel over (C, H, W)
        theta = (self.theta_base * scale).reshape(shape).to(cur.dtype)
        du = 1.0 - self.i_decay / 4096.0
        dv = 1.0 - self.v_decay / 4096.0
        u = torch.zeros_like(cur[:, 0])
        v = torch.zeros_like(u)
        out = []
        self.hoyer_loss = cur.new_zeros(())
        self.v_trace = [] if self.keep_v else None
        for t in range(steps):
            i_t = cur[:, t] if self.rec is None or not out else cur[:, t] + self.rec(out[-1])
            u = du * u + i_t
            v = dv * v + u if self.bias is None else dv * v + u + self.bias
            if self.keep_v:
                eff = theta * self.v_th.abs() * self.e_run if self.hoyer else theta
                self.v_trace.append((v / eff).detach())
            if self.hoyer:
                s = self._hoyer_step(v, theta)
            elif self.base == "rouser":
                s = _RouserSpike.apply(v - theta)
            else:
                s = _FastSigmoid.apply((v - theta) / theta)
            if self.reset == "subtract":   # event count forward, the surrogate's gradient
                n = torch.clamp(torch.floor(v.detach() / theta), 0, self.max_events)
                s = s + (n - s.detach())
                v = v - n * theta
            else:
                v = v * (1.0 - s.detach())
            out.append(s)
        return torch.stack(out, dim=1)

    def _hoyer_step(self, v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        clip = theta * self.v_th.abs()
        u = v / clip
        uc = u.clamp(0.0, 1.0)
        if self.training:
            with torch.no_grad():
                e = (uc ** 2).sum() / uc.sum().clamp_min(1e-12)
                self.e_run.mul_(1 - HOYER_MOMENTUM).add_(HOYER_MOMENTUM * e)
            l1, l2 = uc.sum(), (uc ** 2).sum().clamp_min(1e-12)
            self.hoyer_loss = self.hoyer_loss + l1 * l1 / l2
        else:
            e = self.e_run
        return _HoyerSpike.apply(u, e.to(u.dtype))


def build_layers(input_shape: tuple[int, ...], specs: list[dict], i_decay: int, v_decay: int,
                 base: str, neuron: str = "loihi") -> tuple[nn.ModuleList, list]:
    """Layers from arch specs; returns (spiking layers, forward plan of ('lif', i) /
    ('pool', mode, k) / ('flatten',), neurons per spiking layer) and checks every shape.
    neuron: a key of NEURONS (its reset and event caps go to every spiking layer)."""
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron model {neuron!r}: choose one of {', '.join(NEURONS)}")
    nm = NEURONS[neuron]
    if nm["reset"] != "zero" and any(s["type"] == "cuba_lif_conv" for s in specs):
        raise ValueError(f"the {neuron} neuron is for dense layers (mlp, rnn); a cnn is not supported")
    if nm["reset"] != "zero" and base == "hoyer":
        raise ValueError(f"the {neuron} neuron does not take hoyer thresholds (their batch extremum "
                         f"assumes 0/1 spikes): use baseline or rouser (+ahsar)")
    layers, plan, sizes = nn.ModuleList(), [], []
    shape = tuple(input_shape)
    spiking = [i for i, s in enumerate(specs) if s["type"].startswith("cuba_lif")]
    for i, spec in enumerate(specs):
        kind = spec["type"]
        last = i == spiking[-1] if spiking else False
        hoyer = base == "hoyer" and not last
        flags = {k: spec.get(k, False) for k in ("recurrent", "bias")}
        if any(v and kind != "cuba_lif_dense" or not isinstance(v, bool) for v in flags.values()):
            raise ValueError(f"layer {i}: 'recurrent' and 'bias' must be true or false, and only on "
                             f"dense layers (got {flags} on {kind!r})")
        if kind == "cuba_lif_dense":
            if len(shape) != 1:
                raise ValueError(f"layer {i}: dense layer needs a flat input, got {shape} (add a flatten)")
            syn = nn.Linear(shape[0], spec["n_out"], bias=False)
            if nm["reset"] != "zero":   # no extra arguments for loihi: its layers stay as they were
                flags.update(reset=nm["reset"], max_events=nm["readout_max_events" if last else "max_events"])
            layers.append(CubaLIF(syn, spec["n_out"], i_decay, v_decay, base, hoyer, **flags))
            shape = (spec["n_out"],)
        elif kind == "cuba_lif_conv":
            if len(shape) != 3:
                raise ValueError(f"layer {i}: convolution needs a (C, H, W) input, got {shape}")
            k, st, p = spec["kernel"], spec.get("stride", 1), spec.get("padding", 0)
            syn = nn.Conv2d(shape[0], spec["out_channels"], k, stride=st, padding=p, bias=False)
            h, w = conv_out_hw(shape[1:], (k, k), (st, st), (p, p))
            if h <= 0 or w <= 0:
                raise ValueError(f"layer {i}: kernel {k} larger than the {shape[1]}x{shape[2]} input")
            layers.append(CubaLIF(syn, spec["out_channels"], i_decay, v_decay, base, hoyer))
            shape = (spec["out_channels"], h, w)
        elif kind in ("sum_pool", "avg_pool"):
            k = spec["kernel"]
            if len(shape) != 3 or shape[1] % k or shape[2] % k:
                raise ValueError(f"layer {i}: pooling {k} does not tile the {shape} input")
            plan.append(("pool", kind, k))
            shape = (shape[0], shape[1] // k, shape[2] // k)
            continue
        elif kind == "flatten":
            plan.append(("flatten",))
            shape = (math.prod(shape),)
            continue
        else:
            raise ValueError(f"layer {i}: unknown layer type {kind!r}")
        plan.append(("lif", len(layers) - 1))
        sizes.append(math.prod(shape))
    if not layers or len(shape) != 1:
        raise ValueError("the network must end in a dense spiking readout layer")
    return layers, plan, sizes


def mlp_specs(sizes: list[int], recurrent: bool = False, bias: bool = False) -> list[dict]:
    """Dense layers sizes[0] -> ... -> sizes[-1]; recurrent: every hidden layer gets
    recurrent weights (the readout stays feed-forward); bias: every layer a bias."""
    specs = [{"type": "cuba_lif_dense", "n_in": a, "n_out": b} for a, b in zip(sizes[:-1], sizes[1:])]
    for spec in specs[:-1] if recurrent else ():
        spec["recurrent"] = True
    for spec in specs if bias else ():
        spec["bias"] = True
    return specs


def cnn_specs(channels: tuple[int, ...] = (8, 16), kernel: int = 5, pool: str = "sum_pool",
              hidden: tuple[int, ...] = (), n_classes: int = 10, padding: int = 0) -> list[dict]:
    """conv -> pool per channel count, flatten, dense hidden layers, dense readout."""
    specs = []
    for c in channels:
        specs += [{"type": "cuba_lif_conv", "out_channels": c, "kernel": kernel, "stride": 1,
                   "padding": padding},
                  {"type": pool, "kernel": 2}]
    specs.append({"type": "flatten"})
    specs += [{"type": "cuba_lif_dense", "n_out": h} for h in (*hidden, n_classes)]
    return specs


class SNN(nn.Module):
    """CUBA-LIF network (MLP, recurrent MLP or CNN); hidden layers regulated by AHSAR if on.

    `sizes` builds an MLP; `input_shape` + `specs` any supported stack (cnn_specs,
    mlp_specs(..., recurrent=True) for recurrent hidden layers). neuron: "loihi" or "xylo"
    (NEURONS, module docstring); ValueError for xylo with convolutions or hoyer.
    """

    def __init__(self, sizes: list[int] | None = None, i_decay: int = 1024, v_decay: int = 512,
                 method: str = "ahsar", ahsar: AHSARConfig | None = None,
                 input_shape: tuple[int, ...] | None = None, specs: list[dict] | None = None,
                 neuron: str = "loihi"):
        super().__init__()
        self.neuron = neuron   # a key of NEURONS
        self.base, with_ahsar = split_method(method)
        if specs is None:
            if sizes is None or len(sizes) < 2:
                raise ValueError("an SNN needs at least an input and an output size")
            specs, input_shape = mlp_specs(list(sizes)), (sizes[0],)
        self.method = method
        self.input_shape = tuple(input_shape)
        self.specs = [dict(s) for s in specs]
        self.layers, self._plan, sizes = build_layers(self.input_shape, self.specs, i_decay, v_decay,
                                                      self.base, neuron)
        self.sizes = [math.prod(self.input_shape)] + sizes
        n_hidden = len(self.layers) - 1
        self.regulator = AHSAR(n_hidden, ahsar) if with_ahsar and n_hidden else None

    def scales(self) -> list[float | torch.Tensor]:
        """AHSAR's G * s_l per spiking layer (1 for the readout and without AHSAR)."""
        n = len(self.layers)
        if self.regulator is None:
            return [1.0] * n
        s = self.regulator.scales()
        return [s[l] for l in range(n - 1)] + [1.0]

    def thresholds(self) -> list[torch.Tensor]:
        """Deployed thresholds: per neuron (dense) or per output channel (convolution)."""
        return [l.threshold(s).detach().double() for l, s in zip(self.layers, self.scales())]

    def hoyer_loss(self) -> torch.Tensor:
        """lambda * sum of the Hoyer regulariser over Hoyer layers (0 otherwise)."""
        terms = [l.hoyer_loss for l in self.layers if l.hoyer]
        return HOYER_LAMBDA * torch.stack(terms).sum() if terms else torch.zeros(())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, T, F) inputs -> (spike counts of the readout (B, C), spikes per layer,
        each flattened to (B, T, neurons))."""
        b, steps = x.shape[:2]
        h = x.reshape(b, steps, *self.input_shape)
        spikes = []
        scales = self.scales()
        for step in self._plan:
            if step[0] == "lif":
                s = scales[step[1]]
                s = s.to(h.dtype) if isinstance(s, torch.Tensor) else s
                h = self.layers[step[1]](h, s)
                spikes.append(h.reshape(b, steps, -1))
            elif step[0] == "pool":
                k = step[2]
                p = F.avg_pool2d(h.reshape(b * steps, *h.shape[2:]), k)
                p = p * (k * k) if step[1] == "sum_pool" else p
                h = p.reshape(b, steps, *p.shape[1:])
            else:
                h = h.reshape(b, steps, -1)
        if self.regulator is not None and self.training:
            self.regulator.observe([float(s.detach().mean()) for s in spikes[:-1]])
        return spikes[-1].sum(dim=1), spikes
