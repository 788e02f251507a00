"""`ahsar report BUILD`: one self-contained HTML page per build (BUILD/report.html).

It gathers what the build's own files hold, without running anything:
- manifest.json: the model, its source file and sha256, method, data, layers;
- calibration.json: validation accuracy per stage, the source-vs-build agreement, the
  fidelity pass's measures and findings;
- run-BACKEND.json: accuracy per backend on its samples, the float source model's on the
  same samples, and the agreement of backends that ran the same data;
- energy.json (and energy-TARGET.json): per-layer rates against training and the AHSAR
  band (regulated layers only), energy per chip with totals, the ANN baseline;
- spikes-BACKEND.npz (runs.py): a spike raster of one sample and the spikes per step.
Plots are PNGs embedded as base64 data URIs, styles inline, no script and no network
access, so the page opens anywhere. A file that is missing leaves its section saying
which command writes it; one that cannot be read says so, in the page and in the log.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import interrupts, runs
from .build import load
from .energy_report import inter_chip_statement
from .errors import DeployError

log = logging.getLogger(__name__)
CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222}"
       "h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}"
       "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
       "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
       "td:last-child:not(:nth-child(-n+4)){text-align:left}.note{color:#666}"
       ".fail{color:#b00;font-weight:bold}.pass{color:#070}img{max-width:100%;border:1px solid #eee}")


def _read_json(path: Path, problems: list[str]):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problems.append(f"{path.name}: unreadable ({' '.join(str(e).split())[:100]})")
        return None


def _pct(x) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{100 * x:.2f} %"


def _nj(x) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x * 1e9:,.1f}"


def _table(head: list[str], rows: list[list]) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else e(str(c))}</td>" for c in r) + "</tr>"
                      for r in rows) + "</table>")


class _Raw(str):
    """Markup already escaped."""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    return buf.getvalue()


def raster_png(names: list[str], spikes: list[np.ndarray], title: str) -> bytes:
    """PNG: one panel per layer, a dot per spike (step, neuron) of one sample; spikes[l]
    (T, n_l) bool, names[l] the layer names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(spikes), figsize=(4 * len(spikes), 3.2), squeeze=False)
    for ax, name, s in zip(axes[0], names, spikes):
        t, n = np.nonzero(s)
        ax.scatter(t, n, s=4, marker="|", color="black")
        ax.set_xlim(-0.5, s.shape[0] - 0.5)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.set_title(f"{name}: {int(s.sum())} spikes")
        ax.set_xlabel("time step")
    axes[0][0].set_ylabel("neuron")
    fig.suptitle(title)
    fig.tight_layout()
    return _figure_png(fig)


def step_rates_png(names: list[str], rates: list[np.ndarray], title: str) -> bytes:
    """PNG: spikes per neuron per step against time, a line per layer; rates[l] (T,) float."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, r in zip(names, rates):
        ax.plot(np.arange(len(r)), r, marker=".", label=name)
    ax.set_xlabel("time step")
    ax.set_ylabel("spikes per neuron")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _figure_png(fig)


def _model_section(m: dict) -> str:
    src = m.get("source") or {}
    rows = [[l.get("name"), l.get("kind"), l.get("n_in"), l.get("n_out"), l.get("vth_mant"), l.get("i_decay"),
             l.get("v_decay"), "yes" if l.get("regulated") else "no",
             "-" if l.get("train_rate") is None else f"{l['train_rate']:.3f}"] for l in m.get("layers", [])]
    return (f"<p>Target <b>{html.escape(str(m.get('target')))}</b>, method <b>{html.escape(str(m.get('method')))}</b>, "
            f"data {html.escape(str(m.get('dataset')))} ({html.escape(str(m.get('encoding')))} coding, "
            f"{m.get('steps')} steps, {m.get('n_inputs')} inputs), {m.get('cores')} cores"
            + (f" on {m['chips']} chip{'s' if m['chips'] != 1 else ''} (cores used per chip: "
               f"{', '.join(map(str, m.get('cores_per_chip') or []))})" if m.get("chips") is not None else "")
            + ". Source "
            f"<code>{html.escape(str(src.get('file')))}</code>, sha256 <code>{html.escape(str(src.get('sha256')))}</code>; "
            f"float test accuracy {_pct(m.get('float_test_accuracy'))}.</p>"
            + _table(["layer", "kind", "inputs", "neurons", "threshold (mantissa)", "i_decay", "v_decay",
                      "AHSAR-regulated", "training rate"], rows))


def _calibration_section(c: dict | None) -> str:
    if c is None:
        return "<p class=note>No calibration.json (written by ahsar-export).</p>"
    va = c.get("validation_accuracy") or {}
    out = [f"<p>{c.get('calibration_samples')} calibration samples ({html.escape(str(c.get('split')))}), "
           f"{c.get('validation_samples')} validation samples.</p>",
           _table(["stage", *[k for k in va if k != "chosen"]],
                  [["validation accuracy", *[_pct(v) for k, v in va.items() if k != "chosen"]]]),
           f"<p>Chosen: {html.escape(str(va.get('chosen')))}.</p>" if va.get("chosen") else ""]
    ag = c.get("validation_agreement") or {}
    if ag:
        out.append(f"<p>Float source model vs build on the validation samples: same prediction on "
                   f"{_pct(ag.get('prediction_agreement'))}.</p>")
        out.append(_table(["layer", "spike agreement"], [[l.get("layer"), f"{l.get('spike_agreement', 0):.4f}"]
                                                          for l in ag.get("layers", [])]))
    fid = (c.get("fidelity") or {})
    findings = fid.get("findings") or []
    out.append("<p><b>Fidelity findings:</b> " + ("none: nothing measured differs beyond tolerance.</p>" if not findings
               else "</p>" + _table(["layer", "cause", "detail", "fix"],
                                    [[f.get("layer"), f.get("cause"), f.get("detail"), f.get("fix")] for f in findings])))
    return "".join(out)


def _runs_section(rs: dict[str, dict]) -> str:
    if not rs:
        return "<p class=note>No runs yet: <code>ahsar run BUILD --backend emulator|lava|norse</code>.</p>"
    rows = []
    for b, r in rs.items():
        s = r.get("source") or {}
        rows.append([b, r.get("dataset"), r.get("samples"), _pct(r.get("accuracy")), _pct(s.get("accuracy")),
                     _pct(s.get("prediction_agreement")),
                     "-" if not isinstance(r.get("seconds_per_sample"), (int, float)) else f"{1e3 * r['seconds_per_sample']:.2f}"])
    out = [_table(["backend", "data", "samples", "accuracy", "float source, same samples",
                   "same prediction as source", "ms per sample"], rows)]
    names = list(rs)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = rs[a], rs[b]
            if ra.get("data_id") != rb.get("data_id"):
                continue
            pa, pb = ra.get("predictions") or [], rb.get("predictions") or []
            n = min(len(pa), len(pb))
            if n:
                pairs.append([f"{a} vs {b}", n, _pct(float(np.mean(np.asarray(pa[:n]) == np.asarray(pb[:n]))))])
    if pairs:
        out.append(_table(["backends", "common samples", "same prediction"], pairs))
    return "".join(out)


def _energy_section(e: dict | None) -> str:
    if e is None:
        return "<p class=note>No energy.json yet: <code>ahsar energy BUILD</code>.</p>"
    rows = []
    for l, c in zip(e.get("layers", []), e.get("sparsity_check") or [{}] * len(e.get("layers", []))):
        status = c.get("status", "-")
        cls = "fail" if status == "FAIL" else "pass" if status == "pass" else "note"
        rows.append([l.get("layer"), l.get("neurons"), f"{l.get('rate', 0):.3f}",
                     "-" if l.get("train_rate") is None else f"{l['train_rate']:.3f}",
                     "yes" if l.get("regulated") else "no (band not applied)",
                     _Raw(f"<span class={cls}>{html.escape(status)}</span>"
                          + (": " + html.escape("; ".join(c.get("reasons") or [])) if c.get("reasons") else ""))])
    out = [f"<p>On {html.escape(str(e.get('target')))}, counted on the <b>{html.escape(str(e.get('backend')))}</b> "
           f"backend's spikes: {e.get('samples')} samples x {e.get('steps')} steps, run accuracy "
           f"{_pct(e.get('accuracy'))}.</p>",
           _table(["layer", "neurons", "rate on target", "training rate", "AHSAR band", "sparsity check"], rows)]
    if "cycles_per_step" in e:   # a Xylo build: the chip's compute model, no joules (exporters/xylo.py)
        return "".join(out) + (
            f"<p>{float(e['cycles_per_step']):,.0f} cycles per step at the measured activity (worst case "
            f"{float(e.get('cycles_per_step_worst_case') or 0):,.0f}), {1e6 * float(e.get('compute_s_per_step') or 0):.1f} us "
            f"per step at {float(e.get('clock_hz') or 0) / 1e6:.0f} MHz. Priced: {html.escape(str(e.get('priced')))}.</p>")
    tr = []
    for t in e.get("targets") or []:
        est = " (estimate)" if "ESTIMATE" in str(t.get("note", "")) else ""
        tr.append([f"{t.get('target')}{est}", *([_nj(t.get("dynamic_j")), _nj(t.get("static_j")), _nj(t.get("total_j"))]
                                               if t.get("fits") else ["does not fit", "", ""]),
                   t.get("note") if t.get("fits") else t.get("error")])
    b = e.get("ann_baseline") or {}
    for k, name in (("int8_j", "ANN int8 (45 nm)"), ("int8_sram_j", "ANN int8 + SRAM weight reads"),
                    ("fp32_j", "ANN fp32 (45 nm)")):
        tr.append([name, _nj(b.get(k)), "-", _nj(b.get(k)), f"{b.get('macs')} MACs, {b.get('source')}"])
    if "chips" in e:
        out.append(f"<p>{html.escape(inter_chip_statement(e))}.</p>")
    out.append("<p>Energy per inference, nJ (dynamic from the counted operations; static where the chip's "
               "model has a static power figure, per chip used):</p>")
    out.append(_table(["chip", "dynamic", "static", "total", "model"], tr))
    nb = e.get("neurobench") or {}
    so = nb.get("SynapticOperations") or {}
    out.append(f"<p>NeuroBench: ActivationSparsity {nb.get('ActivationSparsity', float('nan')):.4f}, "
               f"SynapticOperations Effective_ACs {so.get('Effective_ACs', float('nan')):,.0f}, "
               f"Dense {so.get('Dense')}, Footprint {nb.get('Footprint')} B, "
               f"ConnectionSparsity {nb.get('ConnectionSparsity')}.</p>")
    return "".join(out)


def render(build: str | Path, sample: int = 0) -> tuple[str, list[str]]:
    """The page's HTML for build directory `build` and the problems met (files that could
    not be read). sample: which cached sample (row of spikes-BACKEND.npz) the raster shows.
    Raises BuildError (DeployError) if `build` is not a build directory, DeployError if
    the cache has no such sample (nothing is written then)."""
    build = Path(build)
    graph, manifest = load(build)
    problems: list[str] = []
    rs = {}
    for f in sorted(build.glob("run-*.json")):
        r = _read_json(f, problems)
        if isinstance(r, dict):
            rs[f.stem[len("run-"):]] = r
    energy = _read_json(build / "energy.json", problems)
    energy = energy if isinstance(energy, dict) else None
    calib = _read_json(build / "calibration.json", problems)
    parts = [f"<h1>ahsar-deploy report: {html.escape(build.resolve().name)}</h1>",
             "<h2>Model and source</h2>", _model_section(manifest),
             "<h2>Calibration and fidelity</h2>", _calibration_section(calib if isinstance(calib, dict) else None),
             "<h2>Accuracy per backend</h2>", _runs_section(rs),
             "<h2>Rates, sparsity and energy</h2>", _energy_section(energy)]
    if (build / "energy.png").is_file():
        parts.append(_img((build / "energy.png").read_bytes(), "rates, energy by operation, SNN vs ANN"))
    names = [l.name for l in graph.layers]
    parts.append("<h2>Spikes</h2>")
    cache = None
    for b in ("lava", "xylosim", "emulator"):
        try:
            cache = runs.load(build, b, graph)
        except ValueError as e:
            problems.append(f"{runs.path(build, b).name}: unreadable ({e})")
        if cache is not None:
            break
    if cache is None:
        parts.append("<p class=note>No spikes cached: <code>ahsar run BUILD</code> keeps them.</p>")
    else:
        if not 0 <= sample < len(cache.keys):
            raise DeployError(f"--sample {sample}: {cache.path.name} holds samples 0..{len(cache.keys) - 1}")
        parts.append(_img(raster_png(names, [s[sample] for s in cache.spikes],
                                     f"sample {sample} of {cache.path.name}"), "spike raster"))
        rates = [s.mean(axis=(0, 2)) for s in cache.spikes]
        parts.append(_img(step_rates_png(names, rates, f"mean over the {len(cache.keys)} cached samples"),
                          "spikes per neuron per step"))
    if problems:
        parts.append("<h2>Files not read</h2><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>")
    page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>ahsar-deploy report: {html.escape(build.resolve().name)}</title><style>{CSS}</style></head>"
            "<body>" + "".join(parts) + "</body></html>\n")
    return page, problems


def write(build: str | Path, out: str | Path | None = None, sample: int = 0) -> Path:
    """Write the report (default BUILD/report.html) atomically; returns its path."""
    page, problems = render(build, sample)
    for p in problems:
        log.warning("warning: %s", p)
    out = Path(out) if out is not None else Path(build) / "report.html"
    with interrupts.atomic_path(out) as tmp:
        tmp.write_text(page)
    return out


def chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable, None if there is none."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(page: str | Path, png: str | Path, width: int = 1200, height: int = 2400,
               timeout: float = 120) -> str:
    """Render an HTML file in headless Chromium to a PNG screenshot; returns Chromium's
    log (stderr), where failed loads and console errors appear. Raises FileNotFoundError
    without Chromium, subprocess.CalledProcessError / TimeoutExpired if it fails."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("Chromium not found (as root: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="ahsar-chromium-") as profile:
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                            f"--window-size={width},{height}", f"--screenshot={Path(png).resolve()}",
                            Path(page).resolve().as_uri()],
                           capture_output=True, text=True, timeout=timeout, check=True)
    return r.stderr
