"""Attach this project's AHSAR regulator (regulator.py) to a network built with snnTorch,
norse, or any module that exposes a firing threshold ("bring your own model").

Source: Chen et al., "Plug-and-Play Homeostatic Spark", arXiv 2512.05015 (2025), abstract
only; the rule is this project's formulation, ../shared/METHODS.md section 1, the same
AHSAR object (regulator.py) that ahsar_deploy/snn.py uses. Libraries relied on:
snnTorch 1.0 (snntorch/_neurons/neurons.py: `threshold` is a registered buffer, or a
Parameter with learn_threshold=True, read as `mem - self.threshold`; leaky.py, synaptic.py:
forward returns spk or (spk, ...); export_nir.py writes it as v_threshold), norse 1.1
(norse/torch/module/snn.py: a cell keeps its parameters in `self.p`, a NamedTuple such as
LIFParameters / LIFBoxParameters, passed to functional/lif.py and lif_box.py which spike on
`v - p.v_th`; forward returns (spikes, state); utils/export_nir.py writes p.v_th), and
torch.nn.utils.parametrize.

What attach() does, per regulated layer l (semantics of snn.py + train.py):
- Forward hooks count the layer's spikes (non-zero outputs; the output itself, or the first
  element of a tuple) and its neuron-steps (numel of that output: batch x neurons per call,
  x time for a sequence module). A training forward that calls the layer once per time
  step (the usual snnTorch loop) is summed over its calls; `step()` then commits
  r_l = spikes / neuron-steps (spikes per neuron per step, float64, the mean over batch,
  time and neurons of the whole sample sequence that snn.py passes to AHSAR.observe; the
  count is exact, snn.py's float32 mean differs from it by float32 rounding only).
- The effective threshold is theta_base_l * G * s_l with G * s_l = AHSAR.scales()[l] cast
  to the threshold's dtype (as snn.py multiplies theta_base by the scale in float32).
  snnTorch (registered `threshold`): a torch parametrization, so a learnable threshold
  stays a trainable Parameter (its gradient passes through the constant scale);
  norse: a forward pre-hook sets `p = p._replace(v_th=v_th_base * scale)`; any other
  `threshold` attribute: a forward pre-hook sets it. The scales are updated under no_grad
  in step() and end_epoch() (new tensors, never in-place, so calling step() before
  backward is safe too) and used from the next forward on. Nothing is trainable, the loss
  and gradients are untouched: with equal effective thresholds, gradients are bitwise
  those of the plain model (tests/test_regulate.py).
- Eval mode changes nothing: its spikes go to separate counters, read by rates() (e.g.
  the rates of the validation pass, for end_epoch's val_rate and for deployment).
- Default layers: every snnTorch Leaky / Synaptic and norse LIFCell / LIFBoxCell / LIF
  in model.named_modules() order, except the last one, the readout (METHODS.md 1: the
  readout is not regulated). The order is the chain order used for diffusion.

Units and types: rates are spikes per neuron per step (Python floats in [0, 1]);
thresholds keep the library's own units and dtype (float32 unless the user chose
otherwise), reported as float64 numpy copies; scales G * s_l are dimensionless (float64 in
the regulator). Every misuse raises AttachError (errors.py, a DeployError) in one line
that names the layer and the fix.

Typical loop (snnTorch, init_hidden=True):
    att = attach(net)                                  # after building the model
    for epoch in range(epochs):
        net.train()
        for x, y in batches:                           # x: (B, T, F)
            snntorch.utils.reset(net)
            spk = torch.stack([net(x[:, t])[0] for t in range(x.shape[1])], 1)
            loss = F.cross_entropy(spk.sum(1), y)
            opt.zero_grad(); loss.backward(); opt.step()
            att.step()                                 # one observation per training forward
        val_loss = att.measure(lambda: validation_loss(net))   # eval mode, no_grad
        att.end_epoch(float(np.mean(att.rates())), val_loss, epoch + 1 < epochs)
    att.measure(lambda: net_on_test_data(net))         # rates the deployment will check
    att.detach()                                       # thresholds folded, hooks removed
    graph = annotate_nir(export_to_nir(net, sample), att)    # regulated / train_rate metadata
snnTorch's export_to_nir needs per-neuron beta and threshold tensors (scalars fail NIR's
type inference), and Loihi resets to zero: build Leaky(beta=torch.full((n,), b),
threshold=torch.full((n,), t), reset_mechanism="zero"), as tests/test_regulate.py does.
"""
from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import AttachError
from .regulator import AHSAR, AHSARConfig

SUPPORTED = ("snntorch.Leaky", "snntorch.Synaptic", "norse.torch.LIFCell", "norse.torch.LIFBoxCell",
             "norse.torch.LIF")
NIR_SPIKING = ("LIF", "CubaLIF", "IF")     # the NIR node that carries a layer's threshold
_ATTACHED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _supported_classes() -> tuple[type, ...]:
    """The supported classes of the libraries already imported (a model built with a
    library has imported it; nothing is imported here)."""
    out = []
    snn = sys.modules.get("snntorch")
    if snn is not None:
        out += [snn.Leaky, snn.Synaptic]
    nt = sys.modules.get("norse.torch")
    if nt is not None:
        out += [nt.LIFCell, nt.LIFBoxCell, nt.LIF]
    return tuple(out)


class _Scale(nn.Module):
    """Parametrization theta = theta_base * scale; scale (float64, 0-d) is a non-persistent
    buffer, so it follows model.to(device) and is not written into the model's state_dict."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return base * self.scale.to(dtype=base.dtype)


class _Layer:
    """One regulated layer: how its threshold is scaled, and its spike counters."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.train_spikes = self.train_steps = self.eval_spikes = self.eval_steps = 0
        self.scale = torch.ones((), dtype=torch.float64)
        thr = getattr(module, "threshold", None)
        p = getattr(module, "p", None)
        if "threshold" in module._parameters or "threshold" in module._buffers:
            self.kind, base = "tensor", thr
        elif p is not None and hasattr(p, "v_th") and hasattr(p, "_replace"):
            self.kind, base = "norse", torch.as_tensor(p.v_th)
            if torch.any(torch.as_tensor(p.v_leak) != 0):
                raise AttachError(f"layer {name!r} ({type(module).__name__}): v_leak must be 0 to scale "
                                  "its threshold v_th (and to deploy); set v_leak=0 in its parameters")
        elif isinstance(thr, (int, float, torch.Tensor)) and not isinstance(thr, bool):
            self.kind, base = "attribute", thr
        else:
            raise AttachError(f"layer {name!r} ({type(module).__name__}) has no threshold to scale: it needs "
                              "a `threshold` (float or tensor) or norse parameters `p.v_th`")
        low = float(torch.as_tensor(base).detach().min())
        if not low > 0:
            raise AttachError(f"layer {name!r} ({type(module).__name__}): threshold {low:g}; AHSAR scales "
                              "thresholds, so they must be > 0: give the layer a positive threshold")
        self.base = base
        self.hooks = [module.register_forward_hook(self._count)]
        if self.kind == "tensor":
            parametrize.register_parametrization(module, "threshold", _Scale(self.scale.clone()))
        else:
            self.hooks.append(module.register_forward_pre_hook(self._apply))

    def effective(self) -> torch.Tensor | float:
        """theta_base * scale, computed as the forward pass uses it."""
        b = self.base
        if isinstance(b, torch.Tensor):
            return b * self.scale.to(device=b.device, dtype=b.dtype)
        return float(b) * float(self.scale)

    def threshold(self) -> np.ndarray:
        """The threshold the layer runs with now (float64 copy, the module's shape)."""
        if self.kind == "tensor":
            t = self.module.threshold
        elif self.kind == "norse":
            t = self.module.p.v_th if self.base is None else self.effective()
        else:
            t = getattr(self.module, "threshold") if self.base is None else self.effective()
        if not isinstance(t, torch.Tensor):
            return np.array(float(t))
        return t.detach().cpu().double().numpy().copy()

    def set_scale(self, scale: torch.Tensor) -> None:
        self.scale = scale.detach().clone()
        if self.kind == "tensor":
            p = self.module.parametrizations.threshold[0]
            p.scale = self.scale.to(p.scale.device)        # rebound, never in place

    def _apply(self, module, args):
        if self.kind == "norse":
            module.p = module.p._replace(v_th=self.effective())
        else:
            module.threshold = self.effective()

    def _count(self, module, args, out):
        spk = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(spk, torch.Tensor):
            raise AttachError(f"layer {self.name!r} ({type(module).__name__}) returned {type(spk).__name__}; "
                              "attach() needs spikes, or a tuple whose first element is the spikes")
        n = int(torch.count_nonzero(spk.detach()))
        if module.training:
            self.train_spikes += n
            self.train_steps += spk.numel()
        else:
            self.eval_spikes += n
            self.eval_steps += spk.numel()

    def fold(self) -> None:
        """Remove the hooks and leave theta_base * scale in the module (same object where
        the threshold is a Parameter, so an optimizer holding it keeps working)."""
        for h in self.hooks:
            h.remove()
        if self.kind == "tensor":
            parametrize.remove_parametrizations(self.module, "threshold", leave_parametrized=True)
        elif self.kind == "norse":
            if self.base.requires_grad:
                with torch.no_grad():
                    self.base.mul_(self.scale.to(device=self.base.device, dtype=self.base.dtype))
                th = self.base
            else:
                th = self.effective()
            self.module.p = self.module.p._replace(v_th=th)
        else:
            self.module.threshold = self.effective()
        if self.kind != "tensor":
            self.base = None         # threshold() now reads the module


@dataclass(frozen=True)
class RegulatedLayer:
    """What the deploy step needs of one regulated layer.

    name: qualified module name in model.named_modules() (nirtorch, hence snnTorch's
    export_to_nir and norse's to_nir, name the layer's NIR node the same);
    threshold: effective threshold theta_base * G * s_l, float64, the module's shape;
    scale: G * s_l; rate: spikes per neuron per step over the eval passes counted since the
    last reset_rates()/measure() (None if none)."""
    name: str
    kind: str
    threshold: np.ndarray
    scale: float
    rate: float | None


class Attached:
    """AHSAR attached to a user's model; built by attach(). `regulator` is the AHSAR module
    (buffers h, log_s, log_g, best_val_loss: save its state_dict with the checkpoint)."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, nn.Module]], config: AHSARConfig | None):
        self.model = model
        self.regulator = AHSAR(len(layers), config)
        self._layers = []
        try:
            for name, module in layers:
                if module in _ATTACHED or parametrize.is_parametrized(module, "threshold"):
                    raise AttachError(f"layer {name!r} is already attached (or its threshold has another "
                                      "parametrization): call detach() on the earlier Attached first")
                self._layers.append(_Layer(name, module))
                _ATTACHED.add(module)
        except Exception:
            self._release()
            raise
        self.detached = False

    @property
    def names(self) -> list[str]:
        """Names of the regulated layers, in chain (diffusion) order."""
        return [l.name for l in self._layers]

    def _check(self, what: str) -> None:
        if self.detached:
            raise AttachError(f"{what}: the regulator was detached; attach() the model again to regulate it")

    def _apply_scales(self) -> None:
        s = self.regulator.scales()
        for i, layer in enumerate(self._layers):
            layer.set_scale(s[i])

    def step(self) -> list[float]:
        """Commit the training forward pass(es) counted since the last step(): r_l per layer
        (spikes per neuron per step, floats) goes to AHSAR.observe, and the new scales apply
        from the next forward. Call once per training forward pass, e.g. after
        optimizer.step(). Returns the rates. Raises AttachError if a layer ran no
        training-mode forward since the last step()."""
        self._check("step()")
        idle = [l.name for l in self._layers if l.train_steps == 0]
        if idle:
            raise AttachError(f"step(): layer(s) {', '.join(map(repr, idle))} ran no training forward since the "
                              "last step(); run the model in train mode, then call step() once per batch")
        rates = [l.train_spikes / l.train_steps for l in self._layers]
        for l in self._layers:
            l.train_spikes = l.train_steps = 0
        self.regulator.observe(rates)
        self._apply_scales()
        return rates

    def end_epoch(self, val_rate: float, val_loss: float, another_epoch_follows: bool) -> None:
        """Once per epoch after validation (AHSAR.end_epoch: global gain G). val_rate: mean
        over regulated layers of their validation rates, as train.py passes it, e.g.
        float(np.mean(attached.rates())) after measure(); val_loss: the validation loss."""
        self._check("end_epoch()")
        if not (math.isfinite(val_rate) and math.isfinite(val_loss)):
            raise AttachError(f"end_epoch(): val_rate={val_rate!r} and val_loss={val_loss!r} must be finite")
        self.regulator.end_epoch(float(val_rate), float(val_loss), bool(another_epoch_follows))
        self._apply_scales()

    def rates(self) -> list[float]:
        """Per regulated layer, spikes per neuron per step over the eval-mode forwards since
        the last reset_rates() / measure(). Raises AttachError if a layer ran none."""
        idle = [l.name for l in self._layers if l.eval_steps == 0]
        if idle:
            raise AttachError(f"rates(): layer(s) {', '.join(map(repr, idle))} ran no eval-mode forward; "
                              "use attached.measure(lambda: model(x)) or run the model after model.eval()")
        return [l.eval_spikes / l.eval_steps for l in self._layers]

    def reset_rates(self) -> None:
        for l in self._layers:
            l.eval_spikes = l.eval_steps = 0

    def measure(self, fn: Callable[[], Any]) -> Any:
        """Reset the eval counters, run fn() in eval mode under no_grad (every module's
        mode restored afterwards) and return its result; rates() then gives its rates."""
        modes = [(m, m.training) for m in self.model.modules()]
        self.reset_rates()
        self.model.eval()
        try:
            with torch.no_grad():
                out = fn()
        finally:
            for m, mode in modes:
                m.training = mode
        self.rates()          # raises if fn() did not run every regulated layer
        return out

    def scales(self) -> list[float]:
        """G * s_l per regulated layer."""
        return [float(v) for v in self.regulator.scales()]

    def summary(self) -> list[RegulatedLayer]:
        """Name, effective threshold, scale and eval rate of every regulated layer."""
        return [RegulatedLayer(l.name, type(l.module).__name__.removeprefix("Parametrized"), l.threshold(),
                               float(l.scale), l.eval_spikes / l.eval_steps if l.eval_steps else None)
                for l in self._layers]

    def state_dict(self) -> dict:
        return self.regulator.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the regulator (e.g. to resume training) and apply its scales."""
        self._check("load_state_dict()")
        self.regulator.load_state_dict(state)
        self._apply_scales()

    def _release(self) -> None:
        for l in self._layers:
            l.fold()
            _ATTACHED.discard(l.module)

    def detach(self) -> list[RegulatedLayer]:
        """Remove the hooks and fold theta_base * G * s_l into each layer, so the module's
        threshold (snnTorch `threshold`, norse `p.v_th`) is the regulated one that
        export_to_nir / to_nir write. Returns summary(); rates() and summary() still work."""
        self._check("detach()")
        self._release()
        self.detached = True
        return self.summary()


def attach(model: nn.Module, layers: list[nn.Module | str] | None = None,
           config: AHSARConfig | None = None) -> Attached:
    """Attach AHSAR (METHODS.md 1) to `model` with forward hooks; see the module docstring.

    layers: the layers to regulate, as modules of `model` or their names in
    model.named_modules(), in chain order; any module with a positive `threshold` (float or
    tensor) or norse parameters `p.v_th` (v_leak 0) whose forward returns spikes or a tuple
    starting with them. None: every supported layer (SUPPORTED) but the last (the readout).
    config: AHSARConfig (defaults: METHODS.md 1). Adds no parameters to the model.
    Raises AttachError naming the layer and the fix (no spiking layer found, no threshold,
    threshold <= 0, a module not in the model, already attached).
    """
    if not isinstance(model, nn.Module):
        raise AttachError(f"attach: a {type(model).__name__}, not a torch.nn.Module; pass your network")
    named = list(model.named_modules())
    if layers is None:
        classes = _supported_classes()
        found = [(n, m) for n, m in named if classes and isinstance(m, classes)]
        if not found:
            raise AttachError(f"no spiking layer found in {type(model).__name__}: attach() finds "
                              f"{', '.join(SUPPORTED)}; pass the layers to regulate with layers=[...]")
        if len(found) == 1:
            raise AttachError(f"{type(model).__name__} has one spiking layer ({found[0][0] or 'the model'!r}), "
                              "the readout, which AHSAR leaves alone; pass layers=[...] to regulate it anyway")
        chosen = found[:-1]
    else:
        by_module = {id(m): n for n, m in named}
        by_name = dict(named)
        chosen = []
        for i, l in enumerate(layers):
            if isinstance(l, str):
                if l not in by_name:
                    raise AttachError(f"layers[{i}] = {l!r} is not a module name of {type(model).__name__} "
                                      "(see model.named_modules())")
                chosen.append((l, by_name[l]))
            elif isinstance(l, nn.Module) and id(l) in by_module:
                chosen.append((by_module[id(l)], l))
            else:
                raise AttachError(f"layers[{i}] ({type(l).__name__}) is not a submodule of {type(model).__name__}; "
                                  "pass modules of the model or their names")
        if not chosen:
            raise AttachError("layers=[] regulates nothing; pass at least one layer, or None to find them")
        dup = {n for n in [c[0] for c in chosen] if [c[0] for c in chosen].count(n) > 1}
        if dup:
            raise AttachError(f"layers lists {', '.join(map(repr, sorted(dup)))} twice; list each layer once")
    return Attached(model, chosen, config)


def annotate_nir(graph, attached: Attached, node_names: dict[str, str] | None = None):
    """Mark the regulated layers in a nir.NIRGraph written by snntorch.export_to_nir or
    norse.torch.to_nir (after attached.detach()), in place; returns the graph.

    Per regulated layer, the spiking node (LIF, CubaLIF or IF) named like the layer's
    module (node_names maps a layer name to another node name) gets metadata
    regulated = 1 and train_rate = its rate from the last measure() (spikes per neuron per
    step; NaN if unknown): flat keys, as exporters/nir.py writes them (nir 1.0.8 cannot
    read back nested metadata groups), read by exporters/nir_import.py into Layer.regulated
    and Layer.train_rate. Raises AttachError if a node is missing, not spiking, or its
    v_threshold is not the layer's regulated threshold (exported before detach() or from
    another model state).
    """
    if not isinstance(attached, Attached) or not hasattr(graph, "nodes"):
        raise AttachError(f"annotate_nir(graph, attached): got a {type(graph).__name__} and a "
                          f"{type(attached).__name__}; pass the nir.NIRGraph and what attach() returned")
    node_names = node_names or {}
    for layer in attached.summary():
        key = node_names.get(layer.name, layer.name)
        node = graph.nodes.get(key)
        kind = type(node).__name__
        if node is None or kind not in NIR_SPIKING:
            have = [k for k, n in graph.nodes.items() if type(n).__name__ in NIR_SPIKING]
            what = "no node" if node is None else f"node {key!r} is a {kind}, not a spiking node:"
            raise AttachError(f"NIR graph: {what} {key!r} for regulated layer {layer.name!r} (spiking nodes: "
                              f"{', '.join(have) or 'none'}); pass node_names={{{layer.name!r}: '<node>'}}")
        v_th = np.asarray(torch.as_tensor(node.v_threshold).detach().cpu().double().numpy())
        try:
            want = np.broadcast_to(layer.threshold, v_th.shape)
        except ValueError:
            want = None
        if want is None or not np.allclose(v_th, want, rtol=1e-6, atol=0):
            raise AttachError(f"NIR node {key!r}: v_threshold is not the regulated threshold of layer "
                              f"{layer.name!r}; export the model after attached.detach()")
        meta = dict(node.metadata) if isinstance(node.metadata, dict) else {}
        meta["regulated"] = 1
        meta["train_rate"] = np.nan if layer.rate is None else float(layer.rate)
        node.metadata = meta
    return graph
