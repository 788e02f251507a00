"""Xylo Audio 2 (SYNS61201) backend: quantize a float DeployGraph onto the chip's grid, run
it on rockpool's XyloSim (the vendor's C++ simulator, package xylosim) or on a numpy
emulator of the same integer model.

In a build (ahsar_deploy/build.py _export_xylo): xylo_spec.npz (save_spec) holds the integer
network, run by run_build on "xylosim" or "emulator"; fidelity() is the build's calibration
record (float model against the chip's model, findings for --strict); energy() prices a
run in compute cycles (rockpool's cycles model), not joules.

Chip shape: input (<= 16 channels) -> hidden (<= 1000, recurrent, 2 synapses) -> output
(<= 8, 1 synapse, not recurrent); limits and sources in hw_targets/xylo.py.

The integer model, per time step t (xylosim src/v2/cpp/XyloLayer.cpp XyloLayer::evolve,
XyloIAFNeuron.cpp; both sides are int16, "clip" saturates to [-2**15, 2**15 - 1]):
1. Input events x[t] (count per channel, capped at 15) are added to the hidden synaptic
   currents: for each input channel in index order, for each event,
   i_syn = clip(i_syn + (w_in << weight_shift_in)) (synapse 1 or 2).
2. The hidden events of step t-1 (counts, capped at 31) are added the same way, in
   hidden-index order: to hidden neurons through w_rec << weight_shift_rec (the recurrent
   delay is one step) and to output neurons through w_out << weight_shift_out (so the
   output population sees the hidden population one step late).
3. Every neuron then decays and integrates. decay(s, dash) = s >> dash (arithmetic, i.e.
   floor), but +-1 when that is 0 and s != 0 (a linear decay of at least 1):
       i_syn -= decay(i_syn, dash_syn)           (each synapse; AFTER this step's input,
                                                  so the input itself is scaled by the decay)
       dv = -decay(v, dash_mem)                  (int16: -(-2**15) wraps to -2**15)
       dv = clip(dv + sum(i_syn)); dv = clip(dv + bias); v = clip(v + dv)
4. Spikes, reset by subtraction: while v >= threshold and n < cap: n += 1, v -= threshold;
   cap 31 for hidden neurons, 1 for output neurons (output v keeps what is left).
   Hidden counts n are delivered in step t+1 (2. above); output counts are the result.
Saturating adds applied one presynaptic neuron at a time are order-dependent, so the
emulator adds in the same order when a saturation is possible.

Mapping a float DeployGraph (ahsar_deploy/ir.py, Loihi-style CUBA-LIF u[t] = du u[t-1] +
W x[t] + R s[t-1], v[t] = dv v[t-1] + u[t] + b, spike v > th, v <- 0):
- 2 layers: layer 0 -> hidden (its `recurrent` -> weights_rec), layer 1 -> output.
- 1 layer: the hidden population holds an exact relay of the inputs (hidden j fires at
  step t iff input j has an event at t; input weight 64 into synapse 1 with dash_syn 1,
  self-recurrent weight -32 cancels the decaying remainder, dash_mem 0, threshold 32),
  and the layer goes on the output neurons. Input spikes must then be 0/1.
- In both cases output spikes lag the IR's last layer by one step; run() aligns them.
- Decays: dash = round(log2(tau)) with tau = -1/ln(keep) steps (rockpool's rule); each
  rounding is recorded in the report. dash_syn >= 1 (0 would erase the input).
- Because the chip decays i_syn after adding the input, weights are divided by the
  chip's synaptic keep factor 1 - 2**-dash_syn, so i_syn equals the IR's u in integer units.
- One scale k per population (weights, bias, threshold together): integer threshold
  floor(k th) + 1, so "v >= T" on integers is the IR's "v > k th"; int8 weights with one
  left shift per matrix (the smallest shift that holds the largest weight).
- Semantic differences the chip imposes (recorded, never silent): reset by subtraction
  instead of to zero, several events per step (hidden, up to 31) weighted by their count,
  bit-shift instead of multiplicative decay, 16-bit saturating states.
- A model trained with the chip's neuron (ahsar train --neuron xylo: IR layers with reset
  "subtract", max_events 31 hidden / 1 readout, ir.py) has the first two itself: its float
  reference (run_float) counts events n = clamp(floor(v/th), 0, max_events) and subtracts
  n th, so fidelity() measures only quantization, decay rounding and saturation for it.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ahsar_deploy.errors import BackendError, ModelFileError, TargetError, UnsupportedLayerError
from ahsar_deploy.ir import DeployGraph, Layer
from hw_targets.xylo import XYLO_AUDIO2, XyloTarget, dash_keep, nearest_dash

ARRAY_KEYS = ("weights_in", "weights_rec", "weights_out", "dash_mem", "dash_mem_out", "dash_syn",
              "dash_syn_2", "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out")
SHIFT_KEYS = ("weight_shift_in", "weight_shift_rec", "weight_shift_out")
SPEC_KEYS = ARRAY_KEYS + SHIFT_KEYS
THRESHOLD_TARGET = 2 ** 11     # integer threshold aimed at: 16x headroom below the int16 state limit
RELAY = {"w_in": 64, "w_rec": -32, "dash_syn": 1, "dash_mem": 0, "threshold": 32}


def _fail(msg: str, cls=TargetError):
    raise cls(f"{XYLO_AUDIO2.name}: {msg}")


# ----------------------------------------------------------------------------- quantize
def _check_graph(graph: DeployGraph, t: XyloTarget) -> None:
    layers = graph.layers
    if not 1 <= len(layers) <= 2:
        _fail(f"graph has {len(layers)} layers; Xylo runs input -> hidden -> output, so at most 2 "
              f"dense layers: reduce the network to 1 or 2 layers")
    for l in layers:
        if l.kind != "dense":
            _fail(f"{l.name} is a {l.kind} layer; Xylo has dense synapses only: use dense layers",
                  UnsupportedLayerError)
        if l.quantized:
            _fail(f"{l.name} is already quantized (vth {l.vth}); to_xylo takes the float folded "
                  f"graph: pass the graph before calibrate")
        if not all(np.all(np.isfinite(a)) for a in (l.weight, l.threshold, l.recurrent, l.bias)
                   if a is not None):
            _fail(f"{l.name} has non-finite weights, thresholds or bias: retrain or refold")
        if np.any(np.asarray(l.threshold) <= 0):
            _fail(f"{l.name} has a threshold <= 0; Xylo thresholds are positive: retrain or refold")
        if not (0 <= l.i_decay <= 4096 and 0 <= l.v_decay <= 4096):
            _fail(f"{l.name} decays i_decay {l.i_decay}, v_decay {l.v_decay} outside 0..4096")
    if graph.n_inputs > t.max_inputs:
        _fail(f"{graph.n_inputs} input channels exceed the {t.max_inputs} inputs of Xylo: "
              f"reduce the input features to {t.max_inputs}")
    out = layers[-1]
    if out.n_out > t.max_outputs:
        _fail(f"{out.name} has {out.n_out} neurons on the output population, over Xylo's "
              f"{t.max_outputs} output neurons: use at most {t.max_outputs} classes/outputs")
    if out.recurrent is not None and np.any(out.recurrent):
        fix = ("add a readout layer after it" if len(layers) == 1 else "drop its recurrent weights")
        _fail(f"{out.name} maps to Xylo's output neurons, which cannot be recurrent: {fix}")
    if len(layers) == 2 and layers[0].n_out > t.max_hidden:
        _fail(f"{layers[0].name} has {layers[0].n_out} neurons, over Xylo's {t.max_hidden} hidden "
              f"neurons: use at most {t.max_hidden}")


def _shift_for(w: np.ndarray, t: XyloTarget) -> int:
    """Smallest left shift s with max|w| <= weight_max * 2**s, capped at weight_shift_max."""
    m = float(np.abs(w).max(initial=0.0))
    s = 0
    while s < t.weight_shift_max and m > t.weight_max * 2 ** s:
        s += 1
    return s


def _quantize(w: np.ndarray, s: int, t: XyloTarget) -> tuple[np.ndarray, int]:
    raw = np.round(w / 2 ** s)
    q = np.clip(raw, t.weight_min, t.weight_max)
    return q.astype(np.int8), int(np.count_nonzero(q != raw))


def _population(layer: Layer, t: XyloTarget, dash_syn_min: int, threshold_target: int) -> dict:
    """Quantize one layer onto a Xylo population. Returns the integer arrays and the record."""
    keep_syn = 1.0 - layer.i_decay / 4096.0
    keep_mem = 1.0 - layer.v_decay / 4096.0
    dash_syn = nearest_dash(keep_syn, dash_syn_min, t.dash_max)
    dash_mem = nearest_dash(keep_mem, t.dash_mem_min, t.dash_max)
    a = dash_keep(dash_syn)
    w = np.asarray(layer.weight, dtype=np.float64) / a                     # (n_out, n_in)
    r = None if layer.recurrent is None else np.asarray(layer.recurrent, dtype=np.float64) / a
    b = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    th = np.asarray(layer.neuron_thresholds(), dtype=np.float64)
    wmax = max(float(np.abs(w).max(initial=0)), 0.0 if r is None else float(np.abs(r).max(initial=0)))
    if wmax == 0.0:
        _fail(f"{layer.name} has all-zero weights; nothing to deploy")
    top = t.weight_max * 2 ** t.weight_shift_max
    k = threshold_target / th.max()
    k = max(k, t.weight_max / wmax)                          # use all 8 bits of the largest weight
    k = min(k, top / wmax, (t.threshold_max - 1) / th.max())  # no weight clipped; int16 threshold
    if b is not None and np.any(b):
        k = min(k, t.bias_max / float(np.abs(b).max()))
    s_in = _shift_for(k * w, t)
    w8, clipped = _quantize(k * w, s_in, t)
    rec = {"w": None, "shift": 0}
    if r is not None:
        s_rec = _shift_for(k * r, t)
        r8, c = _quantize(k * r, s_rec, t)
        clipped += c
        rec = {"w": r8, "shift": s_rec}
    thr = (np.floor(k * th) + 1).astype(np.int64)
    if thr.max() > t.threshold_max:
        _fail(f"{layer.name} integer threshold {thr.max()} over {t.threshold_max}")
    bias = np.zeros(layer.n_out, np.int16) if b is None else np.clip(
        np.round(k * b), t.bias_min, t.bias_max).astype(np.int16)
    tau = (lambda keep: float("inf") if keep >= 1 else (0.0 if keep <= 0 else -1.0 / np.log(keep)))
    record = {"layer": layer.name, "scale": float(k), "weight_shift_in": s_in,
              "weight_shift_rec": rec["shift"], "weights_clipped": clipped,
              "threshold": thr.tolist() if np.unique(thr).size > 1 else int(thr[0]),
              "i_decay": layer.i_decay, "keep_syn": keep_syn, "dash_syn": dash_syn,
              "keep_syn_chip": dash_keep(dash_syn), "tau_syn_steps": tau(keep_syn),
              "tau_syn_chip_steps": tau(dash_keep(dash_syn)),
              "v_decay": layer.v_decay, "keep_mem": keep_mem, "dash_mem": dash_mem,
              "keep_mem_chip": dash_keep(dash_mem), "tau_mem_steps": tau(keep_mem),
              "tau_mem_chip_steps": tau(dash_keep(dash_mem)),
              "weight_gain_for_syn_decay": 1.0 / a}
    return {"w": w8, "shift": s_in, "rec": rec["w"], "rec_shift": rec["shift"], "threshold": thr,
            "bias": bias, "dash_syn": dash_syn, "dash_mem": dash_mem, "record": record}


def chip_caps(n_layers: int, t: XyloTarget = XYLO_AUDIO2) -> list[int]:
    """Events per step the chip allows each IR layer of an n_layers graph: hidden 31 and
    output 1 (2 layers), or output 1 (1 layer, on the output neurons)."""
    return [t.max_hidden_spikes, t.max_output_spikes][-n_layers:]


def to_xylo(graph: DeployGraph, target: XyloTarget = XYLO_AUDIO2, report: dict | None = None,
            threshold_target: int = THRESHOLD_TARGET) -> dict:
    """Quantize a float folded DeployGraph of 1 or 2 dense layers onto Xylo Audio 2.

    Returns the keyword arguments of rockpool's
    ``XyloSim.from_specification(**spec)`` as numpy arrays: weights_in (n_in, H, 2) int8,
    weights_rec (H, H, 2) int8 [pre, post, synapse], weights_out (H, n_out) int8,
    dash_mem / dash_syn / dash_syn_2 (H,) uint8, dash_mem_out / dash_syn_out (n_out,) uint8,
    threshold (H,) / threshold_out (n_out,) int16, bias (H,) / bias_out (n_out,) int16,
    weight_shift_in / _rec / _out 0-d int8. H = layer 0's width (2 layers) or n_in (1 layer,
    input relay, see the module docstring). Synapse 2 is left unused (zero weights).
    report: if a dict, it receives "layers" (per layer: scale, shifts, clipped weights, integer
    threshold, each decay with its dash and the chip's keep factor and tau), "mapping" and
    "differences" (the chip's semantics that differ from the IR).
    Raises TargetError / UnsupportedLayerError (one line: the limit, the layer, the fix) when
    the graph does not fit: > 2 layers, conv, > 16 inputs, > 1000 hidden, > 8 outputs,
    recurrent output layer, recurrent fan-out > 64 per neuron or > 32 per neuron on average,
    quantized (non-float) layers, thresholds <= 0.
    """
    t = target
    _check_graph(graph, t)
    layers = graph.layers
    n_in = graph.n_inputs
    if layers[0].n_in != n_in:
        _fail(f"{layers[0].name} takes {layers[0].n_in} inputs but the graph has {n_in}")
    out = _population(layers[-1], t, t.dash_syn_min, threshold_target)
    if len(layers) == 2:
        hid = _population(layers[0], t, t.dash_syn_min, threshold_target)
        H = layers[0].n_out
        w_in = np.zeros((n_in, H, 2), np.int8)
        w_in[:, :, 0] = hid["w"].T
        w_rec = np.zeros((H, H, 2), np.int8)
        if hid["rec"] is not None:
            w_rec[:, :, 0] = hid["rec"].T                     # IR (post, pre) -> Xylo (pre, post)
            fan = np.count_nonzero(w_rec[:, :, 0], axis=1)    # targets of each presynaptic neuron
            if fan.max() > t.max_fanout or fan.sum() > t.avg_fanout_per_synapse * t.max_hidden:
                _fail(f"{layers[0].name} recurrent fan-out up to {fan.max()} targets per neuron, "
                      f"{fan.sum()} in all, over Xylo's max fan-out {t.max_fanout} (and memory for "
                      f"{t.avg_fanout_per_synapse} per neuron on average): prune its recurrent weights")
        hidden = dict(threshold=hid["threshold"], bias=hid["bias"],
                      dash_syn=np.full(H, hid["dash_syn"]), dash_mem=np.full(H, hid["dash_mem"]),
                      shift_in=hid["shift"], shift_rec=hid["rec_shift"])
        records = [hid["record"], out["record"]]
        mapping = {layers[0].name: "hidden", layers[1].name: "output"}
    else:
        H = n_in
        w_in = np.zeros((n_in, H, 2), np.int8)
        w_in[:, :, 0] = np.eye(H, dtype=np.int8) * RELAY["w_in"]
        w_rec = np.zeros((H, H, 2), np.int8)
        w_rec[:, :, 0] = np.eye(H, dtype=np.int8) * RELAY["w_rec"]
        hidden = dict(threshold=np.full(H, RELAY["threshold"]), bias=np.zeros(H, np.int16),
                      dash_syn=np.full(H, RELAY["dash_syn"]), dash_mem=np.full(H, RELAY["dash_mem"]),
                      shift_in=0, shift_rec=0)
        records = [out["record"]]
        mapping = {"input relay": "hidden", layers[0].name: "output"}
    spec = {
        "weights_in": w_in, "weights_rec": w_rec, "weights_out": out["w"].T.astype(np.int8),
        "dash_mem": hidden["dash_mem"].astype(np.uint8), "dash_syn": hidden["dash_syn"].astype(np.uint8),
        "dash_syn_2": np.full(H, t.dash_syn_min, np.uint8),
        "dash_mem_out": np.full(layers[-1].n_out, out["dash_mem"], np.uint8),
        "dash_syn_out": np.full(layers[-1].n_out, out["dash_syn"], np.uint8),
        "threshold": hidden["threshold"].astype(np.int16), "threshold_out": out["threshold"].astype(np.int16),
        "bias": hidden["bias"].astype(np.int16), "bias_out": out["bias"].astype(np.int16),
        "weight_shift_in": np.int8(hidden["shift_in"]), "weight_shift_rec": np.int8(hidden["shift_rec"]),
        "weight_shift_out": np.int8(out["shift"]),
    }
    check_spec(spec, t)
    if report is not None:
        report.update({
            "target": t.name, "layers": records, "mapping": mapping,
            "differences": [
                *(["reset by subtraction (IR: " + ", ".join(sorted({l.reset for l in layers})) + ")"]
                  if any(l.reset != "subtract" for l in layers) else []),
                *(["hidden neurons emit up to 31 events per step, each delivered with its weight; "
                   "output neurons at most 1 per step (IR: up to " + ", ".join(
                       f"{l.max_events} ({l.name})" for l in layers) + ")"]
                  if [l.max_events for l in layers] != chip_caps(len(layers), t) else []),
                "bit-shift decay (floor, at least 1 per step) instead of multiplicative decay",
                "16-bit saturating synaptic currents and membrane potentials",
                "output spikes one step after the IR's last layer (aligned by run())",
            ]})
    return spec


# ----------------------------------------------------------------------------- spec files
def check_spec(spec: dict, target: XyloTarget = XYLO_AUDIO2) -> None:
    """Validate a spec against the chip: keys, shapes, integer ranges, fan-out. Raises
    TargetError naming the field, the value and the limit."""
    t = target
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        _fail(f"spec lacks {', '.join(missing)}: build it with exporters.xylo.to_xylo")
    w_in, w_rec, w_out = (np.asarray(spec[k]) for k in ("weights_in", "weights_rec", "weights_out"))
    if w_in.ndim != 3 or w_in.shape[2] != 2 or w_rec.shape != (w_in.shape[1],) * 2 + (2,) \
            or w_out.ndim != 2 or w_out.shape[0] != w_in.shape[1]:
        _fail(f"spec shapes weights_in {w_in.shape}, weights_rec {w_rec.shape}, weights_out "
              f"{w_out.shape}; expected (I, H, 2), (H, H, 2), (H, O)")
    n_in, H = w_in.shape[:2]
    O = w_out.shape[1]
    for what, n, lim in (("input channels", n_in, t.max_inputs), ("hidden neurons", H, t.max_hidden),
                         ("output neurons", O, t.max_outputs)):
        if n > lim:
            _fail(f"{n} {what} exceed Xylo's {lim}")
    sizes = {"dash_mem": H, "dash_syn": H, "dash_syn_2": H, "threshold": H, "bias": H,
             "dash_mem_out": O, "dash_syn_out": O, "threshold_out": O, "bias_out": O}
    for k, n in sizes.items():
        if np.shape(spec[k]) != (n,):
            _fail(f"spec {k} has shape {np.shape(spec[k])}, expected ({n},)")
    ranges = {"weights_in": (t.weight_min, t.weight_max), "weights_rec": (t.weight_min, t.weight_max),
              "weights_out": (t.weight_min, t.weight_max),
              "threshold": (t.threshold_min, t.threshold_max), "threshold_out": (t.threshold_min, t.threshold_max),
              "bias": (t.bias_min, t.bias_max), "bias_out": (t.bias_min, t.bias_max),
              "dash_mem": (t.dash_mem_min, t.dash_max), "dash_mem_out": (t.dash_mem_min, t.dash_max),
              "dash_syn": (t.dash_syn_min, t.dash_max), "dash_syn_2": (t.dash_syn_min, t.dash_max),
              "dash_syn_out": (t.dash_syn_min, t.dash_max),
              **{k: (0, t.weight_shift_max) for k in SHIFT_KEYS}}
    for k, (lo, hi) in ranges.items():
        a = np.asarray(spec[k])
        if a.dtype.kind not in "iu":
            _fail(f"spec {k} has dtype {a.dtype}; integers expected")
        if a.size and (a.min() < lo or a.max() > hi):
            _fail(f"spec {k} spans {a.min()}..{a.max()}, outside Xylo's {lo}..{hi}")
    fan = np.count_nonzero(w_rec, axis=1)                  # (H, 2): targets per pre neuron, synapse
    if fan.size and fan.max() > t.max_fanout:
        j = int(np.argmax(fan.max(axis=1)))
        _fail(f"hidden neuron {j} has {int(fan.max())} recurrent targets on one synapse, over the "
              f"max fan-out {t.max_fanout}: prune its recurrent weights")
    if fan.size and fan.sum(axis=0).max() > t.avg_fanout_per_synapse * t.max_hidden:
        _fail(f"{int(fan.sum(axis=0).max())} recurrent weights on one synapse exceed Xylo's memory "
              f"for an average fan-out of {t.avg_fanout_per_synapse} x {t.max_hidden} neurons: prune")


def save_spec(spec: dict, path: str | Path) -> None:
    """Write a spec as an .npz of integer arrays (no pickle) at exactly `path`, with fixed
    member timestamps, so the same spec gives the same bytes. Raises TargetError if invalid."""
    check_spec(spec)
    with zipfile.ZipFile(path, "w") as z:
        for k in SPEC_KEYS:
            member = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with z.open(member, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(spec[k]), allow_pickle=False)


def load_spec(path: str | Path) -> dict:
    """Read a spec written by save_spec; never unpickles. Raises ModelFileError."""
    try:
        with np.load(path, allow_pickle=False) as f:
            spec = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ModelFileError(f"{path}: not a readable Xylo spec .npz ({e}): rebuild it with to_xylo") from None
    check_spec(spec)
    return spec


# ----------------------------------------------------------------------------- run
def _spikes_in(spec: dict, spikes: np.ndarray) -> np.ndarray:
    x = np.asarray(spikes)
    n_in = np.shape(spec["weights_in"])[0]
    if x.ndim != 3 or x.shape[2] != n_in:
        raise BackendError(f"{XYLO_AUDIO2.name}: input spikes have shape {x.shape}, expected (N, T, {n_in})")
    if x.dtype.kind not in "biu" or (x.dtype.kind != "b" and x.size and x.min() < 0):
        raise BackendError(f"{XYLO_AUDIO2.name}: input spikes must be bool or non-negative integer counts")
    return np.minimum(x.astype(np.int64), XYLO_AUDIO2.max_input_events)   # the chip's cap, as XyloSim's


def run_xylosim(spec: dict, spikes: np.ndarray, counts: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run rockpool's XyloSim (xylosim's C++ model of Xylo Audio 2) on input spikes
    (N, T, n_in) bool or int counts (XyloSim caps counts at 15), one sample at a time from
    reset state. Returns (hidden (N, T, H), output (N, T, O)): bool, or uint8 event counts
    if counts (hidden up to 31 per step, output up to 1). Raises BackendError if rockpool's
    XyloSim cannot be imported."""
    from ahsar_deploy import samna_shim
    samna_shim.apply()
    try:
        from rockpool.devices.xylo.syns61201.xylo_sim import XyloSim
    except ImportError as e:
        raise BackendError(f"{XYLO_AUDIO2.name}: rockpool's XyloSim is unavailable ({e}): "
                           f"install rockpool and xylosim (see the Makefile)") from None
    check_spec(spec)
    x = _spikes_in(spec, spikes)
    args = {k: np.asarray(spec[k]) for k in ARRAY_KEYS}
    args.update({k: int(spec[k]) for k in SHIFT_KEYS})
    mod = XyloSim.from_specification(**args)
    n, T = x.shape[:2]
    H, O = args["weights_rec"].shape[0], args["weights_out"].shape[1]
    hid = np.zeros((n, T, H), np.uint8)
    out = np.zeros((n, T, O), np.uint8)
    for i in range(n):
        mod.reset_state()
        o, _, rec = mod.evolve(x[i], record=True)
        out[i] = np.asarray(o).reshape(T, O)
        hid[i] = np.asarray(rec["Spikes"]).reshape(T, H)
    return (hid, out) if counts else (hid > 0, out > 0)


I16_MIN, I16_MAX = -2 ** 15, 2 ** 15 - 1


def _clip16(a: np.ndarray) -> np.ndarray:
    return np.clip(a, I16_MIN, I16_MAX)


def _wrap16(a: np.ndarray) -> np.ndarray:
    return (a - I16_MIN) % 2 ** 16 + I16_MIN


def _decay(s: np.ndarray, dash: np.ndarray) -> np.ndarray:
    """xylosim decay(): s >> dash (floor), or sign(s) where that is 0."""
    d = s >> dash
    return np.where(d == 0, np.sign(s), d)


def _deliver(state: np.ndarray, counts: np.ndarray, w: np.ndarray, cap: int,
             events: dict) -> np.ndarray:
    """Add counts (N, P) of events through weights w (P, M) to state (N, M), each event a
    saturating int16 add, presynaptic neurons in index order (XyloLayer::deliver_spikes)."""
    c = np.minimum(counts, cap)
    bound = np.abs(state) + c @ np.abs(w)
    if bound.max(initial=0) <= I16_MAX:                     # no partial sum can saturate
        return state + c @ w
    hit = np.zeros(state.shape, bool)
    for p in np.flatnonzero(c.any(axis=0)):                 # repeated same-sign adds: one clip
        raw = state + c[:, p:p + 1] * w[p]
        state = _clip16(raw)
        hit |= raw != state
    events["i_syn_saturated"] += int(hit.sum())
    return state


def _evolve(i_syn: np.ndarray, v: np.ndarray, dash_syn: np.ndarray, dash_mem: np.ndarray,
            bias: np.ndarray, thr: np.ndarray, cap: int, events: dict):
    """One XyloIAFNeuron::evolve for a population: i_syn (N, M, S), v (N, M)."""
    i_syn = i_syn - _decay(i_syn, dash_syn)
    dv = _wrap16(-_decay(v, dash_mem))
    raw = [dv + i_syn.sum(axis=2)]
    dv = _clip16(raw[0])
    raw.append(dv + bias)
    dv = _clip16(raw[1])
    raw.append(v + dv)
    v = _clip16(raw[2])
    events["v_mem_saturated"] += int(((raw[0] != _clip16(raw[0])) | (raw[1] != _clip16(raw[1]))
                                      | (raw[2] != v)).sum())
    n = np.clip(v // thr, 0, cap)
    return i_syn, v - n * thr, n


def run_emulator(spec: dict, spikes: np.ndarray, counts: bool = False,
                 events: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """numpy model of the same integer network, step for step as in the module docstring
    (xylosim src/v2/cpp/XyloLayer.cpp, XyloIAFNeuron.cpp, used by rockpool
    devices/xylo/syns61201/xylo_sim.py); equal to run_xylosim event for event (tests/test_xylo.py).
    Same arguments and returns as run_xylosim. events: if a dict, "i_syn_saturated" and
    "v_mem_saturated" are increased by the neuron-steps where an int16 state (or the
    membrane increment) saturated, so a fidelity report can show them.
    Raises TargetError for an invalid spec."""
    t = XYLO_AUDIO2
    ev = {"i_syn_saturated": 0, "v_mem_saturated": 0}
    check_spec(spec)
    x = _spikes_in(spec, spikes)
    g = {k: np.asarray(spec[k]).astype(np.int64) for k in SPEC_KEYS}
    w_in = [_wrap16(g["weights_in"][:, :, s] << g["weight_shift_in"]) for s in (0, 1)]
    w_rec = [_wrap16(g["weights_rec"][:, :, s] << g["weight_shift_rec"]) for s in (0, 1)]
    w_out = _wrap16(g["weights_out"] << g["weight_shift_out"])
    dash_h = np.stack([g["dash_syn"], g["dash_syn_2"]], axis=1)          # (H, 2)
    dash_o = g["dash_syn_out"][:, None]                                   # (O, 1)
    n, T = x.shape[:2]
    H, O = w_out.shape
    i_h = np.zeros((n, H, 2), np.int64)
    v_h = np.zeros((n, H), np.int64)
    i_o = np.zeros((n, O, 1), np.int64)
    v_o = np.zeros((n, O), np.int64)
    c_h = np.zeros((n, H), np.int64)
    hid = np.zeros((n, T, H), np.uint8)
    out = np.zeros((n, T, O), np.uint8)
    for step in range(T):
        for s in (0, 1):
            i_h[:, :, s] = _deliver(i_h[:, :, s], x[:, step], w_in[s], t.max_input_events, ev)
            i_h[:, :, s] = _deliver(i_h[:, :, s], c_h, w_rec[s], t.max_hidden_spikes, ev)
        i_o[:, :, 0] = _deliver(i_o[:, :, 0], c_h, w_out, t.max_hidden_spikes, ev)
        i_h, v_h, c_h = _evolve(i_h, v_h, dash_h, g["dash_mem"], g["bias"], g["threshold"],
                                t.max_hidden_spikes, ev)
        i_o, v_o, c_o = _evolve(i_o, v_o, dash_o, g["dash_mem_out"], g["bias_out"],
                                g["threshold_out"], t.max_output_spikes, ev)
        hid[:, step] = c_h
        out[:, step] = c_o
    if events is not None:
        for k, v in ev.items():
            events[k] = events.get(k, 0) + v
    return (hid, out) if counts else (hid > 0, out > 0)


def run(graph: DeployGraph, spec: dict, spikes: np.ndarray, backend: str = "xylosim",
        counts: bool = False, events: dict | None = None) -> list[np.ndarray]:
    """Per-IR-layer spikes (N, T, n_out) of the graph to_xylo built spec from, on input
    spikes (N, T, n_in) (bool or 0/1 integers): one empty step is appended and the output
    population read one step late, so the last layer lines up with the IR's step t.
    Returns bool arrays, or uint8 event counts per step if counts (hidden up to 31).
    backend: "xylosim" or "emulator". events: the emulator's saturation counters
    (run_emulator), emulator only. Raises BackendError for an unknown backend, events on
    xylosim, or counts above 1 into a 1-layer build (its relay takes 0/1 spikes)."""
    fn = {"xylosim": run_xylosim, "emulator": run_emulator}.get(backend)
    if fn is None:
        raise BackendError(f"{XYLO_AUDIO2.name}: unknown backend {backend!r}: use xylosim or emulator")
    if events is not None and backend != "emulator":
        raise BackendError(f"{XYLO_AUDIO2.name}: saturation counters come from the emulator only: "
                           f"pass backend='emulator'")
    x = np.asarray(spikes)
    if len(graph.layers) == 1 and x.dtype.kind != "b" and x.size and x.max() > 1:
        raise BackendError(f"{XYLO_AUDIO2.name}: a 1-layer build relays inputs through hidden "
                           f"neurons and needs 0/1 input spikes; got counts up to {x.max()}")
    x = np.concatenate([x, np.zeros_like(x[:, :1])], axis=1)
    hid, out = fn(spec, x, counts=True, **({} if events is None else {"events": events}))
    layers = [hid[:, :-1], out[:, 1:]] if len(graph.layers) == 2 else [out[:, 1:]]
    return layers if counts else [l > 0 for l in layers]


def _layer_subtract(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Float CUBA-LIF layer with reset by subtraction (ir.py, snn.py "xylo") on input
    events x (N, T, n_in) -> event counts (N, T, n_out) uint8, in float64."""
    cur = layer.synaptic_input(x)
    du, dv = 1.0 - layer.i_decay / 4096.0, 1.0 - layer.v_decay / 4096.0
    th = layer.neuron_thresholds()
    rec = None if layer.recurrent is None else np.asarray(layer.recurrent, dtype=np.float64).T
    bias = 0.0 if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    u = np.zeros(cur[:, 0].shape)
    v = np.zeros_like(u)
    n = np.zeros_like(u)
    out = np.zeros(cur.shape, dtype=np.uint8)
    for t in range(cur.shape[1]):
        u = du * u + (cur[:, t] if rec is None else cur[:, t] + n @ rec)
        v = dv * v + u + bias
        n = np.clip(np.floor(v / th), 0, layer.max_events)
        v = v - n * th
        out[:, t] = n
    return out


def run_float(graph: DeployGraph, spikes: np.ndarray) -> list[np.ndarray]:
    """The float model of a graph on input spikes (N, T, F), each layer with its own reset
    (Layer.reset, max_events): per-layer event counts (N, T, n_out) uint8, 0/1 for layers
    that reset to zero (ahsar_deploy.emulator.layer_float, to which a graph without a
    "subtract" layer is left whole). The reference of fidelity()."""
    from ahsar_deploy.emulator import layer_float
    from ahsar_deploy.emulator import run as run_ir
    if all(l.reset == "zero" for l in graph.layers):
        return [s.astype(np.uint8) for s in run_ir(graph, spikes, integer=False)]
    out, h = [], np.asarray(spikes)
    for layer in graph.layers:
        h = _layer_subtract(layer, h) if layer.reset == "subtract" else layer_float(layer, h).astype(np.uint8)
        out.append(h)
    return out


# ----------------------------------------------------------------------------- builds
SPEC_FILE = "xylo_spec.npz"    # the spec in a build directory (save_spec / load_spec)


def run_build(build_dir: str | Path, graph: DeployGraph, spikes: np.ndarray, backend: str) -> list[np.ndarray]:
    """Run a Xylo build (BUILD/xylo_spec.npz; graph from ahsar_deploy.build.load) on input
    spikes (N, T, n_in): per-IR-layer spikes (N, T, n_out) bool, as run(). Raises
    ModelFileError if the spec is missing or damaged, BackendError as run()."""
    return run(graph, load_spec(Path(build_dir) / SPEC_FILE), spikes, backend)


def _agreement_findings(free: dict, n: int, chip_neuron: bool = False) -> list[dict]:
    """A "prediction divergence" finding when the free-running chip and float networks
    disagree (thresholds of passes/fidelity.py), naming the chip's semantic differences
    (chip_neuron: the model was trained with the chip's reset and events, so the causes
    left are quantization and decay rounding)."""
    from ahsar_deploy.passes.fidelity import PREDICTION_AGREEMENT, SPIKE_AGREEMENT
    agree = free["prediction_agreement"]
    worst = min(free["layers"], key=lambda l: l["spike_agreement"])
    if agree >= PREDICTION_AGREEMENT and worst["spike_agreement"] >= SPIKE_AGREEMENT:
        return []
    causes = ("8-bit weights, integer thresholds, bit-shift decay; the model was trained with the chip's "
              "reset and events" if chip_neuron else
              "reset by subtraction, several events per step, bit-shift decay")
    fix = ("what is left is 8-bit weight rounding and near-ties between output counts (at most one event "
           "per output neuron per step): more time steps or a larger margin between classes make the "
           "prediction robust; decay rounding and clipping, where present, are findings of their own"
           if chip_neuron else
           "retrain with --neuron xylo (the chip's reset and events), or for lower firing rates (a higher "
           "threshold, AHSAR's band), so that fewer steps leave a residue or carry several events; or deploy "
           "to loihi, which resets to zero as trained")
    return [{"layer": worst["layer"], "cause": "prediction divergence", "size": round(1 - agree, 4),
             "detail": f"run free on the {n} calibration inputs, Xylo predicts another class than the float "
                       f"model on {1 - agree:.1%} of samples and {worst['layer']}'s spikes agree on "
                       f"{worst['spike_agreement']:.1%} of neuron-steps ({causes})",
             "fix": fix}]


def _decay_findings(report: dict) -> list[dict]:
    """A "decay rounding" finding per layer whose chip keep factors differ from the IR's."""
    out = []
    for r in report["layers"]:
        moved = [f"{reg} {r[reg]} (keep {r['keep_' + s]:.4g}) -> dash_{s} {r['dash_' + s]} (keep "
                 f"{r['keep_' + s + '_chip']:.4g})" for reg, s in (("i_decay", "syn"), ("v_decay", "mem"))
                 if abs(r["keep_" + s + "_chip"] - r["keep_" + s]) > 1e-12]
        if moved:
            out.append({"layer": r["layer"], "cause": "decay rounding", "size": len(moved),
                        "detail": "bit-shift decay moves " + "; ".join(moved),
                        "fix": "retrain with decays Xylo holds exactly: 4096 >> dash (2048, 1024, 512, ...)"})
    return out


def fidelity(graph: DeployGraph, folded: DeployGraph, spec: dict, x_cal: np.ndarray,
             val: np.ndarray, val_y: np.ndarray | None, report: dict) -> dict:
    """The calibration record of a Xylo build: the float model (run_float: each layer with
    its own reset and event cap) against the chip's integer model (run_emulator, equal to
    XyloSim event for event) on the same inputs.

    graph: the imported float model; folded: it after fold, which to_xylo quantized into
    spec (report: to_xylo's). x_cal (N, T, F), val (M, T, F) 0/1 spikes; val_y (M,) labels
    or None. Returns (JSON-ready) {"validation_accuracy": {"float", "folded", "xylo"} (None
    without labels), "validation_agreement": passes.fidelity.compare(float, Xylo) on val,
    "fidelity": {"layers": per layer free-running spike agreement, event-count agreement
    and, for the hidden population, neuron-steps with more events than the layer's
    max_events (a model trained with --neuron xylo has the chip's 31: none),
    "free_running": compare() on x_cal,
    "saturations": int16 saturations counted by the emulator, "findings": [{"layer",
    "cause", "size", "detail", "fix"}]}}. Findings: decay rounding, weights clipped,
    state saturation, multi-event steps, prediction divergence."""
    from ahsar_deploy.passes.fidelity import compare
    names = [l.name for l in folded.layers]
    ev = {"i_syn_saturated": 0, "v_mem_saturated": 0}
    chip = run(folded, spec, x_cal, "emulator", counts=True, events=ev)
    ref = run_float(folded, x_cal)
    free = compare([r > 0 for r in ref], [c > 0 for c in chip], names)
    # multi-event steps are a difference only where the model was trained with fewer events
    multi = [int(np.count_nonzero(c > l.max_events)) if i < len(chip) - 1 else 0
             for i, (c, l) in enumerate(zip(chip, folded.layers))]
    layers = [{"layer": n, "free_agreement": l["spike_agreement"],
               "free_event_agreement": float(np.mean(r == c)), "multi_event_steps": m,
               "neuron_steps": int(c.size)} for n, l, m, c, r in zip(names, free["layers"], multi, chip, ref)]
    findings = _decay_findings(report)
    findings += [{"layer": r["layer"], "cause": "weight clipping", "size": r["weights_clipped"],
                  "detail": f"{r['weights_clipped']} weights clipped to int8 at the largest shift",
                  "fix": "retrain with a weight penalty so the largest weights are nearer the rest"}
                 for r in report["layers"] if r["weights_clipped"]]
    for k, v in ev.items():
        if v:
            findings.append({"layer": "/".join(names), "cause": "state saturation", "size": v,
                             "detail": f"{k.replace('_', ' ')} on {v} neuron-steps of the calibration inputs "
                                       f"(int16, hidden and output populations together)",
                             "fix": "retrain with smaller weights or faster decays"})
    findings += [{"layer": l["layer"], "cause": "multi-event steps", "size": l["multi_event_steps"],
                  "detail": f"{l['multi_event_steps']} of {l['neuron_steps']} neuron-steps emit several events "
                            f"(each delivered with its weight; the float model spikes at most once)",
                  "fix": "retrain with --neuron xylo (the chip's events), or with lower firing rates (a "
                         "higher threshold or AHSAR's band)"}
                 for l in layers if l["multi_event_steps"]]
    chip_neuron = [l.max_events for l in folded.layers] == chip_caps(len(folded.layers)) and all(
        l.reset == "subtract" for l in folded.layers)
    findings += _agreement_findings(free, len(x_cal), chip_neuron)
    runs = {"float": [r > 0 for r in run_float(graph, val)], "folded": [r > 0 for r in run_float(folded, val)],
            "xylo": run(folded, spec, val, "emulator")}
    acc = {k: None if val_y is None else float(np.mean(r[-1].sum(axis=1).argmax(axis=1) == val_y))
           for k, r in runs.items()}
    return {"validation_accuracy": acc, "validation_agreement": compare(runs["float"], runs["xylo"], names),
            "fidelity": {"layers": layers, "free_running": free, "saturations": ev, "findings": findings}}


# ----------------------------------------------------------------------------- energy
def energy(graph: DeployGraph, spec: dict, inputs: np.ndarray, spikes: list[np.ndarray],
           counters: list[dict], target: XyloTarget = XYLO_AUDIO2) -> dict:
    """Compute cost of a Xylo build at the activity it really had (JSON-ready dict).

    inputs (N, T, F) and per-IR-layer spikes (N, T, n_l) of run()/the spike cache;
    counters: energy_report.count of them (per layer "spikes", "rate"). The chip's own
    model: rockpool's cycles_model (hw_targets/xylo.py cycles_per_step) on the input,
    hidden and output rasters (a 1-layer build's hidden population relays the inputs), at
    the default 50 MHz core clock. Priced in joules: nothing. Neither rockpool nor the
    papers in hw_targets/xylo.py publish an energy per operation or a static power for
    Xylo Audio 2; the measured figures there (291 uW, 6.6 uJ per inference) belong to
    another network and are quoted, not applied. Raises BackendError without rockpool."""
    hidden, output = (spikes[0], spikes[1]) if len(graph.layers) == 2 else (inputs, spikes[0])
    rate = lambda a: float(np.count_nonzero(a) / max(1, np.size(a)))
    try:
        cycles = target.cycles_per_step(spec, inputs, hidden, output)
        worst = target.cycles_per_step(spec)
    except ImportError as e:
        raise BackendError(f"{target.name}: rockpool's cycles model is unavailable ({e}): install rockpool "
                           f"(see the Makefile)") from None
    return {
        "target": target.name, "description": target.description, "samples": int(len(inputs)),
        "steps": graph.steps,
        "layers": [{k: c[k] for k in ("layer", "neurons", "spikes", "rate")}
                   | {"train_rate": l.train_rate, "regulated": l.regulated}
                   for l, c in zip(graph.layers, counters)],
        "activity": {"input": rate(inputs), "hidden": rate(hidden), "output": rate(output)},
        "cycles_per_step": cycles, "cycles_per_step_worst_case": worst, "clock_hz": target.clock_hz,
        "compute_s_per_step": cycles / target.clock_hz,
        "compute_s_per_inference": cycles * graph.steps / target.clock_hz,
        "dynamic_j_per_inference": None, "total_j_per_inference": None,
        "priced": "compute cycles and time only (rockpool devices/xylo/syns61201/power_cycles_model.py, "
                  "50 MHz default clock); no joules: no per-operation energy or static power of Xylo "
                  "Audio 2 is published",
        "published": {"dynamic_inference_power_w": target.measured_power_w["aloha_kws_dynamic_inference"],
                      "energy_per_inference_j": target.measured_energy_j["aloha_kws_per_inference"],
                      "source": "Bos & Muir, arXiv 2406.15112 (2024), abstract",
                      "note": "measured for their Aloha keyword-spotting network, not this one; not applied"},
        "energy_note": target.energy_note,
    }


def energy_table(report: dict) -> str:
    """energy() as a few lines for people."""
    a, p = report["activity"], report["published"]
    lines = [f"compute on {report['target']} per inference ({report['samples']} samples, {report['steps']} "
             f"steps each)",
             f"  activity: input {a['input']:.3f}, hidden {a['hidden']:.3f}, output {a['output']:.3f} "
             f"(share of channel-steps with an event)",
             f"  {report['cycles_per_step']:.0f} cycles per step (worst case {report['cycles_per_step_worst_case']:.0f}): "
             f"{report['compute_s_per_step'] * 1e6:.2f} us per step, {report['compute_s_per_inference'] * 1e6:.1f} us "
             f"per inference at {report['clock_hz'] / 1e6:.0f} MHz"]
    lines += [f"  {l['layer']:<8} {l['neurons']:>5} neurons  rate {l['rate']:.3f}" for l in report["layers"]]
    lines += [f"  energy: not priced ({report['priced']})",
              f"  published: {p['dynamic_inference_power_w'] * 1e6:.0f} uW, {p['energy_per_inference_j'] * 1e6:.1f} uJ "
              f"per inference ({p['source']}; {p['note']})"]
    return "\n".join(lines)
