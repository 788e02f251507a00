"""Command line: ahsar {train,export,run,energy,report,inspect,events,sweep}; ahsar-export = ahsar export.

Errors print one line on stderr and exit 1; logs go to stderr; --json prints one JSON
object on stdout. Ctrl-C and SIGTERM print one line and exit 130 / 143 (interrupts.py).
Only light standard modules are imported before main() installs the signal handlers.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import interrupts

log = logging.getLogger("ahsar")



def cmd_train(a) -> dict:
    from . import checkpoint, checks
    from .errors import DeployError
    from .train import ahsar_config, train
    try:   # options left unset (None) take train.default_options' values for the data and arch
        hidden = None if a.hidden is None else tuple(int(h) for h in a.hidden.split(",") if h)
        channels = tuple(int(c) for c in a.channels.split(",") if c)
    except ValueError:
        raise DeployError(f"--hidden {a.hidden!r} / --channels {a.channels!r}: "
                          f"expected comma-separated integers") from None
    checks.train_args(steps=a.steps, epochs=a.epochs, batch=a.batch, augment_shift=a.augment_shift,
                      train_samples=a.train_samples, cli=True)
    for flag, v in (("--control", a.control), ("--ahsar-set", a.ahsar_set)):
        if v is not None and "ahsar" not in a.method:
            raise DeployError(f"{flag} applies to AHSAR; method {a.method!r} has no regulator")
    try:
        reg = ahsar_config(a.control, a.ahsar_set)
    except ValueError as e:
        raise DeployError(f"--ahsar-set: {e}") from None
    try:
        ckpt = train(data=a.data, method=a.method, arch=a.arch, hidden=hidden, steps=a.steps,
                     epochs=a.epochs, seed=a.seed, lr=a.lr, batch=a.batch, encoding=a.encoding,
                     ahsar=reg, theta0=a.theta0, channels=channels,
                     pool=a.pool + "_pool", train_samples=a.train_samples,
                     lr_schedule=a.lr_schedule, augment_shift=a.augment_shift,
                     bias=a.bias, i_decay=a.i_decay, v_decay=a.v_decay, progress=not a.quiet,
                     neuron=a.neuron)
    except ValueError as e:   # an architecture that does not fit the data's shape
        raise DeployError(f"cannot build the {a.arch} for {a.data}: {e}") from None
    checkpoint.save(ckpt, a.output)
    log.info("wrote %s (float test accuracy %.2f %%)", a.output, 100 * ckpt["test_accuracy"])
    return {"model": str(a.output), "test_accuracy": ckpt["test_accuracy"],
            "test_rates": ckpt["test_rates"]}


def cmd_export(a) -> dict:
    from . import checks
    from .build import export
    checks.export_args(calib_samples=a.calib_samples, steps=a.steps, cli=True)
    t0 = time.perf_counter()
    m = export(a.model, a.target, a.output, force=a.force, calib_samples=a.calib_samples,
               progress=not a.quiet, qat=a.qat, refit=not a.no_refit, calib=a.calib,
               dataset=a.data, steps=a.steps, dt_s=a.dt, nir_tau=a.nir_tau, strict=a.strict,
               encoding=a.encoding, reference=a.reference)
    log.info("wrote %s (target %s, %d layers, %d cores) in %.1f s, with what loads on first use (the "
             "compiled loops, the data set, the passes)", a.output, m["target"], len(m["layers"]), m["cores"],
             time.perf_counter() - t0)
    return {"build": str(a.output), **m}


def cmd_run(a) -> dict:
    from . import checks
    from .api import run
    from .build import SOURCE
    checks.run_args(samples=a.samples, timeout=a.timeout, cli=True)
    r = run(a.build, data=a.data, samples=a.samples, backend=a.backend, reference=a.reference,
            timeout=a.timeout, progress=not a.quiet, device=a.device)
    n, secs = r["samples"], r["seconds"]
    print(f"{a.backend}: accuracy {100 * r['accuracy']:.2f} % on {n} {r['dataset']} "
          f"test samples ({secs:.1f} s, {1e3 * secs / n:.1f} ms per sample)", file=sys.stderr)
    if "source" in r:
        s = r["source"]
        print(f"float source model: accuracy {100 * s['accuracy']:.2f} % on the same samples, same "
              f"prediction on {100 * s['prediction_agreement']:.2f} %; spike agreement "
              + ", ".join(f"{l['layer']} {l['spike_agreement']:.4f}" for l in s["layers"]), file=sys.stderr)
    elif r["float_test_accuracy"] is not None:
        print(f"float model (training): {100 * r['float_test_accuracy']:.2f} % on the full test split "
              f"(this build has no {SOURCE}: export it again to compare on the same samples)",
              file=sys.stderr)
    if "reference" in r:
        s = r["reference"]
        print(f"reference {s['file']}: accuracy {100 * s['accuracy']:.2f} %, same prediction on "
              f"{100 * s['agreement']:.2f} % of the {n} samples", file=sys.stderr)
    for c in r["counters"]:
        print(f"  {c['layer']:<8} {c['neurons']:>5} neurons  {c['spikes']:>8} spikes  "
              f"rate {c['rate']:.3f}", file=sys.stderr)
    return r


ENERGY_SAMPLES = 1000   # `ahsar energy`'s default: the first 1000 test samples


def cmd_energy(a) -> dict:
    from . import checks
    from .api import energy
    from .errors import DeployError
    checks.run_args(samples=a.samples, timeout=a.timeout, cli=True)
    report = energy(a.build, data=a.data, samples=a.samples, backend=a.backend, target=a.target,
                    timeout=a.timeout, progress=not a.quiet, device=a.device)
    if "cycles_per_step" in report:   # a Xylo build: the chip's own compute model, no Loihi table
        from exporters.xylo import energy_table as table
    else:
        from .energy_report import table
    out = sys.stderr if a.json else sys.stdout
    print(table(report), file=out)
    for c in report["sparsity_check"]:
        print(f"  sparsity {c['layer']:<8} {c['status']}{': ' + '; '.join(c['reasons']) if c['reasons'] else ''}",
              file=out)
    failed = [c["layer"] for c in report["sparsity_check"] if not c["ok"]]
    if a.check and failed:
        raise DeployError(f"sparsity check failed for {', '.join(failed)} (see energy.json)")
    return report


def cmd_report(a) -> dict:
    import subprocess

    from .errors import DeployError
    from .report import screenshot, write
    out = write(a.build, a.output, sample=a.sample)
    print(out, file=sys.stderr if a.json else sys.stdout)
    if a.png:
        try:
            screenshot(out, a.png)
        except FileNotFoundError as e:
            raise DeployError(f"--png: {e}") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise DeployError(f"--png: Chromium failed to render {out} ({type(e).__name__}); open the HTML file "
                              f"in a browser instead") from None
        print(a.png, file=sys.stderr if a.json else sys.stdout)
    return {"report": str(out), "png": a.png}


def cmd_events(a) -> dict:
    import numpy as np

    from .data import events_to_frames
    from .errors import DeployError
    try:
        size = tuple(int(v) for v in a.sensor_size.split(","))
    except ValueError:
        size = ()
    if len(size) != 3:
        raise DeployError(f"--sensor-size {a.sensor_size!r}: expected W,H,P (e.g. 34,34,2 for N-MNIST)")
    arrays = events_to_frames(a.events, size, a.steps, a.bin_us)
    buf = io.BytesIO()   # in memory first (runs.save): a failed write is then one plain OSError
    np.savez(buf, **arrays)   # uncompressed (memory-mapped when read); a file object: no ".npz" added
    with interrupts.atomic_path(a.output) as tmp:
        tmp.write_bytes(buf.getvalue())
    shapes = {k: list(v.shape) for k, v in arrays.items()}
    log.info("wrote %s: %s", a.output, ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items()))
    return {"output": str(a.output), "shapes": shapes}


def cmd_inspect(a) -> dict:
    p = Path(a.path)
    if p.suffix.lower() == ".net" and p.is_file():
        from .api import inspect
        d = inspect(p)
        lines = [f"lava-dl netx network {p}: input {tuple(d['input_shape'])}, {len(d['layers'])} layers, "
                 f"{d['tSample'] or 'no'} steps recorded (simulation/tSample)"]
        lines += [f"  {l['name']:<8} {l['kind']:<5} {l['n_in']:>6} -> {l['n_out']:<6} vth {l['vth']}  "
                  f"i_decay {l['i_decay']} v_decay {l['v_decay']}" for l in d["layers"]]
        print("\n".join(lines), file=sys.stderr if a.json else sys.stdout)
        return d
    if p.suffix.lower() == ".nir" and not p.is_dir():
        from exporters.nir_import import describe
        d = describe(p, dt_s=a.dt, tau_convention=a.nir_tau)
        lines = [f"NIR graph {p} (written by {d['producer']}): input {tuple(d['input_shape'])}, deploys as "
                 f"{len(d['layers'])} layers at dt {d['dt_s']:g} s (tau as {d['tau_convention']})"]
        for l in d["layers"]:
            conv = (f" kernel {tuple(l['kernel'])} stride {tuple(l['stride'])} padding {tuple(l['padding'])}"
                    if l["kind"] == "conv" else "")
            pools = f"  pools fused {l['pools_fused']}" if l["pools_fused"] else ""
            lines.append(f"  {l['name']:<8} {l['kind']:<5} {l['n_in']:>6} -> {tuple(l['out_shape'])}{conv}  "
                         f"{l['neuron']} i_decay {l['i_decay']} v_decay {l['v_decay']}  threshold "
                         f"{l['threshold_min']:.4g}..{l['threshold_max']:.4g}{pools}")
        print("\n".join(lines), file=sys.stderr if a.json else sys.stdout)
        return d
    if p.is_dir():
        from .build import load
        graph, m = load(p)
        lines = [f"build {p}: target {m['target']}, method {m['method']}, dataset {m['dataset']}, "
                 f"{m['steps']} steps, {m['cores']} cores"]
        for l in m["layers"]:
            lines.append(f"  {l['name']:<8} {l['n_in']:>5} -> {l['n_out']:<5} vth {l['vth_mant']:>6}  "
                         f"i_decay {l['i_decay']} v_decay {l['v_decay']}  train rate {l['train_rate']}")
        print("\n".join(lines), file=sys.stderr if a.json else sys.stdout)
        return m
    from . import checkpoint
    ckpt = checkpoint.load(p)
    model = checkpoint.build_model(ckpt, where=str(p))
    hist = ckpt.get("history") or []
    rates = ckpt.get("test_rates") or []
    info = ckpt["data"] if isinstance(ckpt["data"], dict) else {}
    lines = [f"checkpoint {p}: method {model.method}, sizes {model.sizes}, dataset "
             f"{info.get('name')!r:.40}, {info.get('steps')!r:.20} steps, "
             f"float test accuracy {ckpt.get('test_accuracy')}"]
    if isinstance(ckpt.get("train"), dict):   # training options (untrusted: shown truncated)
        lines.append("  trained with: " + ", ".join(f"{k!s:.20} {v!r:.20}" for k, v in ckpt["train"].items()))
    for l, th in enumerate(model.thresholds()):
        lines.append(f"  layer{l}: threshold {float(th.mean()):.4f}"
                     + (f"  test rate {rates[l]:.3f}" if l < len(rates) else ""))
    reg = model.regulator
    if reg is not None:
        lines.append(f"  AHSAR: scales {[round(float(s), 4) for s in reg.scales()]}, "
                     f"gain {float(reg.log_g.exp()):.4f}, state h {[round(float(h), 4) for h in reg.h]}")
        lines.append(f"  AHSAR settings: {reg.config.summary() or 'the defaults'}")
    if hist:
        lines.append("  epoch  train loss  val loss  val acc %  rates per layer"
                     + ("  |  AHSAR h / scales / gain" if "gain" in hist[0] else ""))
    for e in hist:
        line = (f"  {e['epoch']:>5}  {e['train_loss']:>10.4f}  {e['val_loss']:>8.4f}  "
                f"{100 * e['val_accuracy']:>9.2f}  " + " ".join(f"{x:.3f}" for x in e["rates"]))
        if "gain" in e:
            line += ("  |  " + " ".join(f"{x:.3f}" for x in e.get("h", [])) + " / "
                     + " ".join(f"{x:.3f}" for x in e["scales"]) + f" / {e['gain']:.3f}")
        lines.append(line)
    print("\n".join(lines), file=sys.stderr if a.json else sys.stdout)
    return {"path": str(p), "method": model.method, "sizes": model.sizes,
            "thresholds": [float(t.mean()) for t in model.thresholds()],
            "test_accuracy": ckpt.get("test_accuracy"), "history": hist,
            "ahsar": None if reg is None else {"config": reg.config.to_dict(), "settings": reg.config.settings(),
                                               "scales": [float(x) for x in reg.log_s.exp()],
                                               "gain": float(reg.log_g.exp())}}


def cmd_sweep(a) -> dict:
    from .sweep import sweep, table
    summary = sweep(a.config, a.output, address=a.address, serial=a.serial, progress=not a.quiet)
    print(table(summary), file=sys.stderr if a.json else sys.stdout)
    return summary


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint written by `ahsar train`, a NIR graph (*.nir), or a lava-dl "
                                 "netx network (*.net, deployed as it is)")
    p.add_argument("--target", default="loihi",
                   help="chip to deploy to: loihi, loihi2 (Lava's fixed-point grid) or xylo-audio2 "
                        "(SynSense Xylo Audio 2: at most 16 inputs, 2 dense layers, 1000 hidden and "
                        "8 output neurons; runs on --backend xylosim or emulator) (default loihi)")
    p.add_argument("-o", "--output", default="build", help="build directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing build directory")
    p.add_argument("--calib-samples", type=int, default=512,
                   help="at most this many calibration samples (default 512)")
    p.add_argument("--calib", metavar="FILE.npy", default=None,
                   help="calibration inputs: (N, F) intensities in [0, 1] or (N, T, F) spikes, sample "
                        "first (snnTorch's time-first (T, N, F): np.swapaxes(x, 0, 1)) (default: the "
                        "model's training split)")
    p.add_argument("--qat", choices=("auto", "on", "off"), default="auto",
                   help="quantization-aware fine-tune: auto = when quantization costs > 0.5 pp")
    p.add_argument("--no-refit", action="store_true", help="skip the convex readout refit")
    p.add_argument("--strict", action="store_true",
                   help="refuse the build (exit 1, nothing written) if the fidelity pass finds any "
                        "cause for the chip to differ from the model (overflow, silenced neurons, ...)")
    p.add_argument("--data", default=None, metavar="NAME|FILE.npz",
                   help="dataset for calibration and validation: a built-in name or an .npz file "
                        "(default: the checkpoint's; a .nir graph needs --data or --calib)")
    p.add_argument("--steps", type=int, default=None,
                   help="time steps per sample (a .nir graph: needed unless the data are spikes)")
    p.add_argument("--encoding", default=None, choices=("rate", "poisson", "latency"),
                   help="a .nir graph: how intensities become input spikes (default rate)")
    p.add_argument("--reference", metavar="PREDS.npy", default=None,
                   help="class predictions (N,) of your own model on the test split of --data, in order: "
                        "the graph as read must agree with them on 95 %% of the samples, else a finding "
                        "(--strict refuses it)")
    _nir_args(p)


def _nir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dt", type=float, default=None,
                   help="NIR graph: seconds per time step mapping tau to Loihi decays (default: the dt the "
                        "graph shows, e.g. snnTorch's 1e-4 from r = tau/dt; else 1e-3, or to_nir's with "
                        "--nir-tau norse); a --dt the graph contradicts is refused")
    p.add_argument("--nir-tau", default="seconds", metavar="seconds|norse|norse:DT",
                   help="NIR graph: tau in seconds, or as norse 1.1 to_nir writes it (dt * tau; norse = "
                        "to_nir's default dt 1e-3 s, norse:DT = the dt to_nir was called with)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _run_args(p: argparse.ArgumentParser, backend: str | None = "default", samples: int | None = None) -> None:
    if backend == "default":
        from exporters import DEFAULT_BACKEND as backend   # imported here: after kernels.pin() (numpy)
    p.add_argument("build", help="build directory written by ahsar-export (run: or a lava-dl netx .net file)")
    p.add_argument("--backend", default=backend, help="lava (Loihi simulation), emulator (the build's chip "
                   "model, bit-exact integer: Loihi's or Xylo's), norse (float reference from model.nir) or "
                   "xylosim (rockpool's XyloSim, xylo-audio2 builds); " + (f"default {backend}, bit-exact with Lava "
                   "(XyloSim) and about 1000x faster" if backend else
                   "default: the samples cached by earlier lava (xylosim) or emulator runs, the rest on the "
                   "emulator, which is bit-exact with Lava (XyloSim)"))
    p.add_argument("--data", default=None, metavar="NAME|FILE.npz",
                   help="test data: a built-in name or an .npz file (default: the build's dataset)")
    p.add_argument("--samples", type=int, default=samples,
                   help=f"test samples (default: {samples or 'all'}" + (
                       "; per-inference figures settle within a few hundred)" if samples else ")"))
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a run is stopped")
    p.add_argument("--device", default="cpu", help="torch device the emulator runs on: cpu (default), cuda, "
                   "cuda:1, ... (integer maths, spike for spike the same on every device)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, as every other error (no usage block)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    from .data import DATASETS, ENCODINGS
    from .snn import METHODS
    from .train import ARCHS
    from . import __version__
    ap = _Parser(prog="ahsar", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"ahsar-deploy {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train a regulated SNN and write a checkpoint",
                       description="Train a regulated SNN and write a checkpoint. Defaults depend on the input "
                                   "size: inputs of 784 features or more (28x28 images: mnist, fmnist) get "
                                   "--hidden 1000 (mlp), --steps 8, --batch 128, --lr 1e-3, --lr-schedule "
                                   "cosine; smaller ones (digits) --hidden 128,64 (mlp), --steps 16, --batch 64, "
                                   "--lr 2e-3, --lr-schedule constant. Options given on the command line always "
                                   "win.")
    p.add_argument("--data", default="digits", metavar="NAME|FILE.npz",
                   help=f"built-in dataset ({', '.join(DATASETS)}; sdigits, smnist: images fed row by row "
                        f"as binary spikes) or an .npz file: x, y (or x_train, y_train, x_test, y_test); "
                        f"x float intensities in [0, 1] or 0/1 spikes (N, T, ...)")
    p.add_argument("--method", default="ahsar", choices=METHODS,
                   help="threshold method; '+ahsar' adds the AHSAR regulator")
    p.add_argument("--arch", default="mlp", choices=ARCHS,
                   help="mlp, cnn, or rnn (hidden dense layers with recurrent weights; e.g. --data smnist)")
    p.add_argument("--hidden", default=None,
                   help="hidden dense layer sizes, comma separated (default: mlp 1000 for inputs of 784+ "
                        "features, else 128,64; rnn 128; cnn none after the convolutions)")
    p.add_argument("--bias", action="store_true", help="mlp, rnn: a trainable bias per neuron (default off)")
    p.add_argument("--i-decay", type=int, default=1024,
                   help="current decay register 0..4096 of every layer, u *= 1 - i_decay/4096 (default 1024)")
    p.add_argument("--v-decay", type=int, default=512,
                   help="voltage decay register 0..4096 of every layer, v *= 1 - v_decay/4096 (default 512)")
    p.add_argument("--neuron", default="loihi", choices=("loihi", "xylo"),
                   help="neuron model trained: loihi (reset to zero, one spike per step; default) or xylo "
                        "(Xylo Audio 2's: reset by subtraction, up to 31 events per step in hidden layers, 1 "
                        "in the readout; mlp and rnn only; deploy with --target xylo-audio2)")
    p.add_argument("--channels", default="8,16", help="cnn: output channels per conv+pool stage")
    p.add_argument("--pool", default="sum", choices=("sum", "avg"), help="cnn: pooling kind")
    p.add_argument("--steps", type=int, default=None,
                   help="time steps per sample (default 8 for inputs of 784+ features, else 16; spike data: "
                        "its own)")
    p.add_argument("--encoding", default="rate", choices=ENCODINGS, help="input coding")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default 1e-3 for inputs of 784+ features, else 2e-3)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                   help="cosine anneals the rate to 0 over the epochs (default cosine for inputs of 784+ "
                        "features, else constant)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 128 for inputs of 784+ "
                                                          "features, else 64)")
    p.add_argument("--control", choices=("integral", "proportional"), default=None,
                   help="AHSAR control mode (default integral)")
    p.add_argument("--ahsar-set", default=None, metavar="KEY=VALUE,...",
                   help="AHSAR settings (README, AHSAR section): energy=L (0..1) steers rates from the band's "
                        "centre (0, default) toward its lower edge (1): fewer spikes, less energy; "
                        "s_min=1 lets thresholds only rise; r_lo=0.02,r_hi=0.1 another band; diffusion=0; "
                        "eta_g=0 (no global gain)")
    p.add_argument("--theta0", type=float, default=None,
                   help="initial threshold of every layer (default 1; rouser 1.25)")
    p.add_argument("--train-samples", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--augment-shift", type=int, default=0, metavar="PX",
                   help="translate each training image by up to PX pixels per axis (default 0: off)")
    p.add_argument("-o", "--output", default="model.pt")
    _common(p)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("export", help="fold, calibrate and emit a build for a target")
    _export_args(p)
    _common(p)
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("run", help="run a build on a backend over the test split")
    _run_args(p)
    p.add_argument("--reference", metavar="PREDS.npy", default=None,
                   help="class predictions (N,) of your own framework on the same test samples, in "
                        "order: prints how often the build agrees with them")
    _common(p)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("energy", help="energy per inference from the target's spike counts")
    _run_args(p, backend=None, samples=ENERGY_SAMPLES)
    p.add_argument("--target", default=None,
                   help="energy model: loihi, loihi2 (estimate), truenorth, spinnaker, spinnaker2 (default: the build's "
                        "target); a xylo-audio2 build is priced by its own compute model only")
    p.add_argument("--check", action="store_true",
                   help="exit non-zero if on-target rates leave training's or the AHSAR band")
    _common(p)
    p.set_defaults(fn=cmd_energy)
    p = sub.add_parser("report", help="write BUILD/report.html: model, calibration, accuracy per backend, "
                                      "rates, energy per chip, a spike raster (one self-contained page)")
    p.add_argument("build", help="build directory written by ahsar-export")
    p.add_argument("-o", "--output", default=None, help="HTML file to write (default BUILD/report.html)")
    p.add_argument("--sample", type=int, default=0, help="cached sample whose spikes the raster shows (default 0)")
    p.add_argument("--png", default=None, metavar="FILE.png",
                   help="also render the page to a PNG screenshot with headless Chromium")
    _common(p)
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("events", help="bin event streams (x, y, t, p) into a spike data file with tonic")
    p.add_argument("events", help=".npz with events, offsets, y (or events_train, offsets_train, y_train, "
                                  "events_test, ...): events a structured array x, y, t (us), p")
    p.add_argument("--sensor-size", required=True, metavar="W,H,P", help="sensor width, height, polarities")
    p.add_argument("--bin-us", type=int, default=None, help="microseconds per time step")
    p.add_argument("--steps", type=int, default=None,
                   help="time steps per sample (with --bin-us: keep the first STEPS bins; alone: split "
                        "each sample's span into STEPS bins)")
    p.add_argument("-o", "--output", required=True, help="spike data file to write (.npz)")
    _common(p)
    p.set_defaults(fn=cmd_events)
    p = sub.add_parser("inspect", help="summarise a checkpoint, a build directory or a NIR graph")
    p.add_argument("path")
    _nir_args(p)
    _common(p)
    p.set_defaults(fn=cmd_inspect)
    p = sub.add_parser("sweep", help="train a grid of trials (methods x seeds x options from a TOML or JSON "
                                     "file) as Ray tasks; a sweep run again skips its finished trials")
    p.add_argument("config", help="TOML (or .json) file with a [sweep] table of `ahsar train` options; a list "
                                  "makes an option a grid axis, e.g. method = [\"baseline\", \"ahsar\"], "
                                  "seeds = [0, 1]")
    p.add_argument("-o", "--output", required=True,
                   help="directory: trials/<id>.pt and .json per trial, sweep.json, sweep.md")
    p.add_argument("--address", default=None,
                   help="run on this existing Ray cluster (ray.init's address: HOST:PORT, ray://HOST:PORT or "
                        "auto); default: a new local Ray instance on all cores")
    p.add_argument("--serial", action="store_true", help="run the trials one by one in this process, without Ray")
    _common(p)
    p.set_defaults(fn=cmd_sweep)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code: 0, 1 (bad input), 2 (bug or bad arguments),
    130 / 143 (interrupted by SIGINT / SIGTERM; one line on stderr, no traceback).

    argv None (the installed commands, ``python -m``): the process ends here with
    os._exit once stdout and stderr are flushed. Every file is closed by then, and the
    interpreter's teardown after torch takes most of a second, during which CPython puts
    back the default signal handlers (so a signal would kill it). A list (in-process use,
    tests): returns, and the previous handlers are restored."""
    interrupts.install()   # first: a signal during the imports below is handled too
    try:
        code = _pin() or _main(argv)
    except SystemExit as e:   # argparse: --help, bad arguments (message already printed)
        if argv is not None:
            interrupts.uninstall()
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if argv is not None:
        interrupts.uninstall()
        return code
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe (`| head`): nothing more to say
            pass
    os._exit(code)


def _pin() -> int:
    """Pin the float kernels (kernels.py) before torch or numpy loads: 0, or 1 with one line
    on stderr for a bad AHSAR_KERNELS. In-process use after torch or numpy was imported
    unpinned goes on with their own kernels, said in one line (checkpoints and builds
    record which kernels made them)."""
    from . import kernels
    try:
        kernels.pin()
    except ValueError as e:
        print(f"ahsar: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"ahsar: note: {e}; going on with the libraries' own kernels", file=sys.stderr)
    return 0


def _main(argv: list[str] | None) -> int:
    cmd = None
    try:
        args = parser().parse_args(argv)   # imports torch: can take seconds
        interrupts.check()
        cmd = args.cmd
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                            format="%(message)s", stream=sys.stderr)
        code = _dispatch(args)
        interrupts.check()   # a signal since the last check: the work is done, but it was asked
        return code
    except interrupts.Interrupted as e:
        what = (f"ahsar {cmd}: interrupted by {e.signal_name}; no output was left half-written "
                f"(each file is the old one or the complete new one)" if cmd else
                f"ahsar: interrupted by {e.signal_name} while starting; nothing was written")
        print(what, file=sys.stderr)
        return e.exit_code
    finally:
        interrupts.closing()   # from here on SIGINT and SIGTERM are ignored


def _dispatch(args) -> int:
    from .errors import DeployError
    try:
        result = args.fn(args)
    except DeployError as e:
        print(f"ahsar {args.cmd}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not bad input: still one line; AHSAR_DEBUG=1 re-raises
        if os.environ.get("AHSAR_DEBUG"):
            raise
        from .errors import WRITE_ERRNOS, os_error_cause
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:   # not bad input either: a full or read-only disk
            cause, fix = os_error_cause(e)
            print(f"ahsar {args.cmd}: error: cannot write {e.filename or 'an output'}: {cause}: {fix}",
                  file=sys.stderr)
            return 1
        print(f"ahsar {args.cmd}: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
              f"(please report; AHSAR_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=float))
    return 0


def export_main(argv: list[str] | None = None) -> int:
    """`ahsar-export ARGS` = `ahsar export ARGS` (argv None: the process's own arguments)."""
    if argv is None:
        sys.argv[1:1] = ["export"]
        return main()
    return main(["export", *argv])


if __name__ == "__main__":
    sys.exit(main())
