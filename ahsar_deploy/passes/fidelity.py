"""Fidelity: where and why the integer network can differ from the folded float one.

Per layer, after calibration (and QAT or refit, whichever was kept), on the calibration
inputs, each layer fed the integer spikes of the layers before it (as calibrate.py):

- "current overflow": neuron-steps where the 24-bit current u wrapped around (Lava's
  LIF wraps u, lava/proc/lif/models.py subthr_dynamics; HARDWARE.md section 1);
- "voltage saturation": neuron-steps where v was clipped to +-(2**23 - 1);
- "silenced neurons": neurons with non-zero float weights whose integer weights all
  round to 0 (one threshold per layer: a neuron whose own threshold was far above the
  layer's gets weights far below the grid's step);
- "weight rounding": neurons that lose more than WEIGHT_LOSS of their summed |weight|
  to rounding and clipping;
- "threshold rounding": |vth - k| / k above THRESHOLD_ERROR (vth = round(k), weights
  use k itself);
- "current overflow possible": not seen on the data, but the static worst case over
  any binary input (the largest |u| the weights allow in `steps` steps) passes 2**23;
- "prediction divergence": the whole integer network, run free on the calibration inputs,
  predicts another class (argmax of the last layer's spike counts) than the folded float
  network on more than 1 - PREDICTION_AGREEMENT of the samples, or a layer's spikes agree
  on fewer than SPIKE_AGREEMENT of its neuron-steps, and no cause above was found: the
  weight and threshold rounding accumulate (each small, named with its size);
- and, reported without a warning, the spike agreement with the float layer, per layer
  both fed the same integer input spikes ("spike_agreement") and with each network run
  free ("free_agreement", compare()).

A recurrent layer's recurrent weights count with its feed-forward ones (one grid), and a
bias as one more incoming value of its neuron, in the rounding findings; the worst-case
current bound lets every recurrent neuron spike at every step too. The measured u and v
(wraps, saturations) include the recurrent current and the bias (emulator.layer_int).

Each finding names the layer, the cause, its size and the fix; build.py prints one
`warning:` line per finding and `--strict` refuses the build.
"""
from __future__ import annotations

import numpy as np

from hw_targets import LoihiTarget

from ..emulator import layer_float, run
from ..torch_emulator import layer_int   # spike for spike emulator.layer_int, faster
from ..ir import DeployGraph, Layer

WEIGHT_LOSS = 0.5          # share of a neuron's summed |weight| lost to rounding
THRESHOLD_ERROR = 0.01     # relative error of the rounded threshold
PREDICTION_AGREEMENT = 0.98   # free-running predictions int vs float, below it: a finding
SPIKE_AGREEMENT = 0.95        # free-running spikes of a layer (share of neuron-steps), likewise


def _u_bound(q: Layer, steps: int, target: LoihiTarget) -> float:
    """Largest |u| any binary input can drive in `steps` steps (integer units): every input
    with a positive (or every one with a negative) weight spiking at every step (the
    layer's own neurons too, through its recurrent weights), u decaying by
    (4096 - i_decay) / 4096 per step (truncation only shrinks it)."""
    w = _incoming(q, per_scale=False)[:, :-1]          # the bias does not enter u
    drive = max(np.clip(w, 0, None).sum(axis=1).max(initial=0), -np.clip(w, None, 0).sum(axis=1).min(initial=0))
    keep = (target.decay_unity - q.i_decay) / target.decay_unity
    return float(drive * 2 ** target.act_shift * sum(keep ** t for t in range(steps)))


def _incoming(l: Layer, per_scale: bool = True) -> np.ndarray:
    """Each neuron's (channel's) incoming values, (channels, fan): weights, then recurrent
    weights, then the bias as the last column (0 if none). An integer layer's are
    W_int * 2**weight_exp and b_int, divided by its scale k if per_scale (then in the
    folded float units)."""
    e = 2.0 ** l.weight_exp if l.quantized else 1.0
    cols = [np.asarray(l.weight, dtype=np.float64).reshape(l.channels, -1) * e]
    if l.recurrent is not None:
        cols.append(np.asarray(l.recurrent, dtype=np.float64) * e)
    bias = np.zeros(l.channels) if l.bias is None or l.kind == "conv" else np.asarray(l.bias, dtype=np.float64)
    out = np.concatenate(cols + [bias.reshape(-1, 1)], axis=1)
    return out / l.scale if l.quantized and per_scale else out


def _threshold_error(q: Layer) -> float:
    exact = q.scale * float(q.threshold[0])
    return abs(q.vth - exact) / exact


_RECALIBRATE = "calibrate on inputs as strong as the ones you will run (--calib)"


def _findings(f: Layer, q: Layer, ev: dict, neuron_steps: int, bound: float, target) -> list[dict]:
    out = []

    def add(cause: str, size, detail: str, fix: str) -> None:
        out.append({"layer": q.name, "cause": cause, "size": size, "detail": detail, "fix": fix})

    if not ev["u_wrap"] and bound >= target.state_max:
        add("current overflow possible", round(bound / target.state_max, 3),
            f"inputs stronger than the calibration data's can drive u to {bound / target.state_max:.2f} x 2**23 "
            f"(every input with a same-sign weight spiking at every step), where it wraps", _RECALIBRATE)
    if ev["u_wrap"]:
        add("current overflow", ev["u_wrap"], f"u wrapped at 24 bits on {ev['u_wrap']} of {neuron_steps} neuron-steps",
            _RECALIBRATE + ", or retrain with smaller weights or a faster current decay")
    if ev["v_saturate"]:
        add("voltage saturation", ev["v_saturate"],
            f"v clipped at +-2**23 on {ev['v_saturate']} of {neuron_steps} neuron-steps",
            _RECALIBRATE + ", or retrain with a voltage leak (smaller tau_mem) or weaker inhibition")
    wf, wq = _incoming(f), _incoming(q)
    silenced = np.flatnonzero((wq == 0).all(axis=1) & (wf != 0).any(axis=1))
    if silenced.size:
        add("silenced neurons", int(silenced.size),
            f"{silenced.size} neuron(s) ({', '.join(map(str, silenced[:5]))}{', ...' if silenced.size > 5 else ''}) "
            f"have every weight rounded to 0",
            "their weights are far below the layer's threshold on its 8-bit grid (after the fold: "
            "their own threshold was far above the layer's, or the weights are tiny); retrain with "
            "per-layer thresholds or larger weights, or split the layer")
    total = np.abs(wf).sum(axis=1)
    loss = np.divide(np.abs(wq - wf).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    lossy = np.flatnonzero((loss > WEIGHT_LOSS) & ~np.isin(np.arange(len(loss)), silenced))
    if lossy.size:
        add("weight rounding", int(lossy.size),
            f"{lossy.size} neuron(s) lose over {WEIGHT_LOSS:.0%} of their summed |weight| (worst {loss[lossy].max():.0%})",
            "their weights span more than the chip's 8-bit grid: retrain with a weight penalty, "
            "or with per-layer thresholds")
    err = _threshold_error(q)
    if err > THRESHOLD_ERROR:
        add("threshold rounding", round(err, 4),
            f"threshold mantissa {q.vth} for {q.scale * float(q.threshold[0]):.3f} ({err:.1%} off)",
            "the layer's weights are too large for its threshold on this grid; retrain with smaller "
            "weights or a larger threshold")
    return out


def compare(reference: list[np.ndarray], deployed: list[np.ndarray], names: list[str]) -> dict:
    """Two free-running runs of the same network on the same inputs, e.g. the float source
    model and the integer build: per-layer spike lists (N, T, n_out) bool, as
    emulator.run returns. Returns {"prediction_agreement": share of samples whose
    predicted class (argmax of the last layer's spike counts; ties to the lowest index)
    is the same, "layers": [{"layer", "spike_agreement" (share of equal neuron-steps),
    "spikes_reference", "spikes"}]} (JSON-ready)."""
    pred = [r[-1].sum(axis=1).argmax(axis=1) for r in (reference, deployed)]
    return {"prediction_agreement": float(np.mean(pred[0] == pred[1])),
            "layers": [{"layer": n, "spike_agreement": float(np.mean(a == b)),
                        "spikes_reference": int(np.count_nonzero(a)), "spikes": int(np.count_nonzero(b))}
                       for n, a, b in zip(names, reference, deployed)]}


def _weight_error(f: Layer, q: Layer) -> float:
    """Summed |rounding error| over summed |weight| (and bias) of the layer (float units)."""
    wf, wq = _incoming(f), _incoming(q)
    total = np.abs(wf).sum()
    return float(np.abs(wq - wf).sum() / total) if total > 0 else 0.0


def fidelity(folded: DeployGraph, quantized: DeployGraph, spikes: np.ndarray,
             target: LoihiTarget) -> dict:
    """Compare the integer graph with the folded float graph it came from.

    folded, quantized: the same layers before and after calibrate. spikes: (N, T, F)
    calibration inputs, 0/1. Returns {"layers": [per-layer measures], "free_running":
    compare() of the two networks run free, "findings": [{"layer", "cause", "size",
    "detail", "fix"}, ...]} (JSON-ready)."""
    layers, findings = [], []
    x = spikes
    for f, q in zip(folded.layers, quantized.layers):
        ev = {"u_wrap": 0, "v_saturate": 0}
        ref = layer_float(f, x)
        s = layer_int(q, x, target, events=ev)
        bound = _u_bound(q, quantized.steps, target)
        layers.append({"layer": q.name, "u_wrap": ev["u_wrap"], "v_saturate": ev["v_saturate"],
                       "neuron_steps": int(ref.size), "spike_agreement": float(np.mean(s == ref)),
                       "u_bound": bound, "u_wrap_possible": bound >= target.state_max,
                       "threshold_error": _threshold_error(q)})
        findings += _findings(f, q, ev, int(ref.size), bound, target)
        x = s
    free = compare(run(folded, spikes, integer=False), run(quantized, spikes, integer=True),
                   [l.name for l in quantized.layers])
    for l, c in zip(layers, free["layers"]):
        l["free_agreement"] = c["spike_agreement"]
    agree = free["prediction_agreement"]
    worst = min(free["layers"], key=lambda l: l["spike_agreement"])
    if (agree < PREDICTION_AGREEMENT or worst["spike_agreement"] < SPIKE_AGREEMENT) and not findings:
        errs = ", ".join(f"{q.name} weights {_weight_error(f, q):.1%}, threshold {_threshold_error(q):.2%}"
                         for f, q in zip(folded.layers, quantized.layers))
        findings.append({
            "layer": worst["layer"], "cause": "prediction divergence", "size": round(1 - agree, 4),
            "detail": f"run free on the calibration inputs, the integer network predicts another class "
                      f"than the float one on {1 - agree:.1%} of {len(spikes)} samples and {worst['layer']}'s "
                      f"spikes agree on {worst['spike_agreement']:.1%} of neuron-steps; no overflow or "
                      f"silenced neuron: rounding accumulates ({errs})",
            "fix": "--qat on fine-tunes against the integer grid; or retrain with fewer, larger weights "
                   "per neuron (a weight penalty) so 8-bit rounding matters less"})
    return {"layers": layers, "free_running": free, "findings": findings}


def warning_line(finding: dict) -> str:
    """One line for stderr: layer, cause, size, fix."""
    return f"warning: {finding['layer']}: {finding['cause']}: {finding['detail']}; fix: {finding['fix']}"
