"""The small internal IR passed between stages: a DeployGraph of frozen layer records.

It carries what NIR does not: integer decays, reset mode, the float-or-integer state of
each layer, its integer grid, and the firing rate seen in training.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import UnsupportedLayerError


KINDS = ("dense", "conv")


def conv_out_hw(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> tuple[int, int]:
    """Output height and width of a 2-d convolution (dilation 1), as torch computes it."""
    return tuple(int((i + 2 * p - k) // s + 1) for i, k, s, p in zip(in_hw, kernel, stride, padding))


@dataclass(frozen=True)
class Layer:
    """Dense or convolutional synapses into CUBA-LIF neurons (Loihi's model, snn.py).

    kind "dense": weight (n_out, n_in). kind "conv": weight (C_out, C_in, kh, kw), torch's
    cross-correlation order, on an input of in_shape (C, H, W) with stride and zero
    padding (H, W); dilation 1, groups 1. Spikes between layers are always flattened
    (N, T, C*H*W) in torch's C, H, W order, so a dense layer after a conv has weight
    (n_out, C*H*W). Thresholds are per neuron for dense and per output channel for conv.
    """
    name: str
    weight: np.ndarray            # dense (n_out, n_in) / conv (C_out, C_in, kh, kw); float64 or int
    threshold: np.ndarray         # dense (n_out,) / conv (C_out,) float64 (after fold: all equal)
    i_decay: int                  # Loihi current decay register + 1, 0..4096
    v_decay: int                  # Loihi voltage decay register, 0..4096
    # reset "zero": s = v > threshold, v <- 0 where s, u untouched, one spike per step at
    # most (Loihi; snn.py "loihi"). "subtract": n = clamp(floor(v / threshold), 0,
    # max_events) events per step, v <- v - n * threshold (Xylo's neuron, exporters/xylo.py
    # docstring step 4; snn.py "xylo"); the next layer and `recurrent` receive the count n,
    # each event with its weight. Only Xylo deploys "subtract" (the Loihi export refuses it).
    reset: str = "zero"
    regulated: bool = False       # an AHSAR-regulated hidden layer
    train_rate: float | None = None  # mean firing rate of the float model (test split)
    kind: str = "dense"
    vth: int | None = None        # integer threshold mantissa (None until calibrated)
    weight_exp: int = 0           # effective weight = weight * 2**weight_exp
    weight_bits: int = 8
    scale: float | None = None    # integer units per float unit of the folded layer
    in_shape: tuple[int, int, int] | None = None   # conv: (C, H, W) of the layer input
    stride: tuple[int, int] = (1, 1)               # conv: (H, W)
    padding: tuple[int, int] = (0, 0)              # conv: (H, W), zeros
    # dense only: weights (n_out, n_out) from this layer's own spikes at step t-1 into
    # its current at step t, u[t] = du*u[t-1] + W x[t] + R s[t-1]; same units and
    # weight_exp as weight. None: no recurrent connection.
    recurrent: np.ndarray | None = None
    # per neuron (n_out,), added to v every step, v[t] = dv*v[t-1] + u[t] + b (Loihi's
    # neuron bias); in the layer's float units, or integer units once quantized. None: 0.
    bias: np.ndarray | None = None
    # the most events a neuron emits per step: 1 with reset "zero"; with "subtract" 1..31
    # (Xylo: 31 for hidden neurons, 1 for output neurons)
    max_events: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: layer kind {self.kind!r}, expected one of {KINDS}")
        if not ((self.reset == "zero" and self.max_events == 1)
                or (self.reset == "subtract" and isinstance(self.max_events, int) and 1 <= self.max_events <= 31)):
            raise UnsupportedLayerError(f"{self.name}: reset {self.reset!r} with up to {self.max_events!r} events "
                                        f"per step; supported: 'zero' with 1, 'subtract' with 1..31")
        object.__setattr__(self, "stride", tuple(int(v) for v in self.stride))
        object.__setattr__(self, "padding", tuple(int(v) for v in self.padding))
        if self.in_shape is not None:
            object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        if self.recurrent is not None:
            n = int(self.weight.shape[0])
            if self.kind != "dense" or np.shape(self.recurrent) != (n, n):
                raise UnsupportedLayerError(
                    f"{self.name}: recurrent weights {np.shape(self.recurrent)} on a {self.kind} layer; "
                    f"only dense layers take them, shaped (n_out, n_out) = ({n}, {n})")
        if self.bias is not None and np.shape(self.bias) != (self.n_out,):
            raise UnsupportedLayerError(f"{self.name}: bias of shape {np.shape(self.bias)}, expected "
                                        f"({self.n_out},), one per output neuron")

    @property
    def out_shape(self) -> tuple[int, ...]:
        """(n_out,) for dense, (C_out, H_out, W_out) for conv."""
        if self.kind == "conv":
            if self.in_shape is None:
                raise ValueError(f"{self.name}: conv layer without in_shape")
            hw = conv_out_hw(self.in_shape[1:], self.weight.shape[2:], self.stride, self.padding)
            return (int(self.weight.shape[0]), *hw)
        return (int(self.weight.shape[0]),)

    @property
    def n_in(self) -> int:
        if self.kind == "conv":
            return int(np.prod(self.in_shape))
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def channels(self) -> int:
        """Number of thresholds: output neurons (dense) or output channels (conv)."""
        return int(self.weight.shape[0])

    @property
    def fan_in(self) -> int:
        """Synapses into one neuron: n_in (dense), C_in * kh * kw (conv)."""
        return int(np.prod(self.weight.shape[1:]))

    def neuron_thresholds(self) -> np.ndarray:
        """Threshold of every output neuron (n_out,), conv channels repeated over H*W."""
        th = np.asarray(self.threshold, dtype=np.float64)
        return np.repeat(th, self.n_out // self.channels) if self.kind == "conv" else th

    def synaptic_ops(self, x: np.ndarray) -> int:
        """Synaptic events routed for input spikes x (N, T, n_in): every input spike times
        the number of synapses it has (dense: n_out; conv: the outputs whose window holds
        it, so borders, stride and padding count exactly). As NeuroBench counts them:
        the layer run on binary inputs with all-ones weights."""
        x = np.asarray(x)
        if self.kind != "conv":
            return int(np.count_nonzero(x)) * self.n_out
        ones = self.with_(weight=np.ones(self.weight.shape))
        return int(round(float(ones.synaptic_input((x != 0).astype(np.float64)).sum())))

    def recurrent_synaptic_ops(self, s: np.ndarray) -> int:
        """Recurrent synaptic events of this layer's own output spikes s (N, T, n_out): every
        spike times its recurrent fan-out n_out (the dense (n_out, n_out) matrix routes each
        spike to every neuron of the layer, as netx's RecurrentDense does, lava-dl
        netx/blocks/process.py), counted as NeuroBench counts synaptic operations (binary
        spikes, all-ones weights; HARDWARE.md section 5). 0 for a layer without
        `recurrent`. A spike at the last step is counted too: the chip routes it."""
        return 0 if self.recurrent is None else int(np.count_nonzero(s)) * self.n_out

    def synaptic_input(self, x: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Weighted input (N, T, n_out) of spikes x (N, T, n_in), in float64 by default:
        exact for integer weights while sums stay below 2**53. float32 is exact only for
        integer weights and binary inputs whose summed |weights| per neuron are < 2**24."""
        x = np.asarray(x, dtype=dtype)
        w = np.asarray(self.weight, dtype=dtype)
        if self.kind != "conv":   # one 2-D GEMM (numpy would run N small ones on 3-D x)
            n, t, f = x.shape
            return (x.reshape(n * t, f) @ w.T).reshape(n, t, w.shape[0])   # sizes, not -1: N or T may be 0
        import torch
        n, t = x.shape[:2]
        xi = torch.from_numpy(np.ascontiguousarray(x).reshape(n * t, *self.in_shape))
        y = torch.nn.functional.conv2d(xi, torch.from_numpy(w), stride=tuple(self.stride),
                                       padding=tuple(self.padding))
        return y.numpy().reshape(n, t, self.n_out)

    @property
    def quantized(self) -> bool:
        return self.vth is not None

    def with_(self, **kw) -> "Layer":
        return replace(self, **kw)


@dataclass(frozen=True)
class DeployGraph:
    layers: tuple[Layer, ...]
    n_inputs: int
    steps: int                    # time steps per sample
    dataset: str
    encoding: str
    method: str
    source_sha256: str
    float_accuracy: float | None = None
    target: str | None = None
    notes: dict = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        return all(l.quantized for l in self.layers)

    def with_(self, **kw) -> "DeployGraph":
        return replace(self, **kw)
