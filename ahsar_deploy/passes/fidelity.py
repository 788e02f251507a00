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

source_check, the net under the import: the float graph as read (before any pass)
against what the model that wrote it did, "graph differs from its model" when
- a layer's train_rate (the rate its model had in training: a checkpoint's test rates,
  or the "train_rate" metadata regulate.annotate_nir writes into a snnTorch/norse graph)
  and the graph's own rate on the export's validation inputs differ by more than
  RATE_TOLERANCE of train_rate or RATE_FLOOR, whichever is larger, or
- the user's reference predictions (--reference) and the graph's agree on fewer than
  REFERENCE_AGREEMENT of the samples.
Such a graph is not the model (a reset, a dt or a neuron the file does not say), and no
pass after the import can repair it.
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
# source_check. A correct import reproduces its model's rates up to the data: train_rate is
# measured on another split (a checkpoint's test split, a user's own choice) than the
# export's validation inputs. Measured on correct imports (the digits demo's checkpoint,
# examples/norse_ahsar_loihi.py, examples/snntorch_ahsar_loihi.py, tests/
# test_frameworks_norse.py): within 6 % relative; the broken ones (a norse graph read at
# the wrong dt, norse LIFCell read as NIR's CubaLIF, snnTorch's subtract reset) are off by
# 40 % to 10x. 25 % is the sparsity check's tolerance (energy_report.RATE_TOLERANCE); the
# floor keeps a nearly silent layer (rate 0.004 vs 0.002) from counting as a divergence.
RATE_TOLERANCE = 0.25      # relative to train_rate
RATE_FLOOR = 0.01          # spikes per neuron per step, absolute
REFERENCE_AGREEMENT = 0.95  # share of samples where the graph predicts the user's reference class
SOURCE_CAUSES = ("a reset the file does not say (snnTorch's default reset_mechanism=\"subtract\"; norse's "
                 "v_reset or reset_method, which to_nir does not write), the dt the writer used (norse's "
                 "to_nir(..., dt=DT) is read with --nir-tau norse:DT), or a neuron the NIR node does not "
                 "describe (docs/frameworks/)")


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


def source_check(graph: DeployGraph, spikes: list[np.ndarray], samples: str,
                 reference: np.ndarray | None = None, predicted: np.ndarray | None = None,
                 ref_samples: str = "", assumed: str = "") -> dict:
    """Does the float graph as read behave like the model that wrote it?

    graph: the imported (or checkpoint's) float graph; spikes: its per-layer spikes
    (N, T, n_out) bool on the inputs `samples` names (emulator.run). reference (M,) int64:
    the user's model's predicted classes on the inputs ref_samples names, predicted (M,)
    int64: the graph's on the same inputs. assumed: how the import read the time constants
    (notes["import"]["dt_from"]), quoted in the finding. Rates are spikes per neuron per
    step. Returns {"layers": [{"layer", "train_rate", "rate", "tolerance", "ok"}],
    "reference": {"samples", "agreement"} or None, "findings": [...]} (JSON-ready);
    tolerances: module docstring."""
    layers, findings = [], []
    how = f" (time constants read with {assumed})" if assumed else ""
    for l, s in zip(graph.layers, spikes):
        rate, train = float(np.mean(s)), l.train_rate
        row = {"layer": l.name, "train_rate": train, "rate": rate, "tolerance": None, "ok": None}
        layers.append(row)
        if train is not None:
            row["tolerance"] = tol = max(RATE_TOLERANCE * train, RATE_FLOOR)
            row["ok"] = abs(rate - train) <= tol
            if not row["ok"]:
                findings.append({
                    "layer": l.name, "cause": "graph differs from its model", "size": round(rate - train, 4),
                    "detail": f"the graph does not behave like the model that wrote it: {l.name} fires at "
                              f"{rate:.3f} spikes per neuron per step on the {samples}{how}, its model at "
                              f"{train:.3f} in training (train_rate; tolerance {tol:.3f})",
                    "fix": f"likely {SOURCE_CAUSES}; deploy the model the graph describes, or fix the graph"})
    ref = None
    if reference is not None:
        agree = float(np.mean(np.asarray(reference) == np.asarray(predicted)))
        ref = {"samples": ref_samples, "agreement": agree}
        if agree < REFERENCE_AGREEMENT:
            last = graph.layers[-1].name
            findings.append({
                "layer": last, "cause": "graph differs from its model", "size": round(1 - agree, 4),
                "detail": f"the graph does not behave like the model that wrote it: it predicts the "
                          f"reference's class on {agree:.1%} of the {ref_samples}{how} (at least "
                          f"{REFERENCE_AGREEMENT:.0%} expected)",
                "fix": f"likely {SOURCE_CAUSES}; deploy the model the graph describes, or fix the graph"})
    return {"layers": layers, "reference": ref, "findings": findings}
