"""Lava backend: write a lava-dl netx HDF5 network and run it in Lava's Loihi simulation.

File layout: lava-dl src/lava/lib/dl/netx/hdf5.py and utils.py NetDict (see
../shared/HARDWARE.md section 2). Each layer is `dense` or `conv` with a CUBA neuron
group; netx maps vThMant -> vth, iDecay - 1 -> du, vDecay -> dv and re-derives the dense
weight exponent (optimize_weight_bits), which is lossless for even weights in [-256, 254].
Conv layers: `weight` (C_out, C_in, kH, kW) in torch's cross-correlation order (netx flips
the kernel and Lava's conv flips it back before torch's conv2d), `shape` (C, H, W),
`stride`/`padding`/`dilation` (H, W), `groups`; netx reverses all of them to Lava's
W, H, C order. A network that starts with a conv gets an `input` layer carrying only
the input shape (C, H, W); a dense layer after a conv is preceded by a `flatten` layer
(netx then flattens in torch's C, H, W order). Neither adds a step of delay.
A dense layer with recurrent weights is a `dense_rec` layer with `weight_rec` (n_out,
n_out) beside `weight`: netx's RecurrentDense (netx/blocks/process.py) feeds the layer's
spikes back through a second Dense into its own a_in, one step later, and netx chooses
one weight exponent for both matrices (hdf5.py create_dense, lossless for our even
weights in [-256, 254]). A bias is the layer's `bias` dataset (n_out,), which netx loads
as bias_mant with bias_exp 6 (hdf5.py get_neuron_params): v += bias << 6 every step.

Running: one Lava run for many samples. netx's LIFReset zeroes u and v of layer i at
t % T == reset_offset + 1 + i, so with reset_offset=1 each sample starts from zero
state; layer i's spikes for sample k, step tau appear at time kT + tau + 2 + i (one
step of delay per Dense). Lava runs in a child process in chunks of CHUNK steps (sinks
read after each chunk; ENV.md: long runs and big Var.get() calls can hang), under a
timeout, so a hang becomes an error. The worker runs in its own session: an interrupt or
a timeout kills its whole process group (worker and Lava's forked processes), reaped.
LIFReset does not clear a recurrent Dense's buffer, so a recurrent layer's last spike of
one sample would reach the first step of the next (and spikes a bias drives before the
first sample, the first): the worker pauses the run before each sample's first step of
each recurrent layer i (time kT + 2 + i) and sets that layer's recurrent a_buff to 0, so
every sample starts from s[-1] = 0, as the emulator's (one pause per sample and
recurrent layer).
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from ahsar_deploy import interrupts
from ahsar_deploy.errors import BackendError
from ahsar_deploy.ir import DeployGraph

CHUNK = 1000


def write_netx(graph: DeployGraph, path: str | Path) -> None:
    """Write the integer graph as lava-dl netx HDF5 (model.net) to `path`; built in memory
    and written by Python, as exporters/nir.py write does (h5py on a full disk crashes)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        sim = f.create_group("simulation")   # as slayer's export_hdf5 writes it; netx ignores it,
        sim.create_dataset("Ts", data=1.0)   # netx_import reads the steps back from it
        sim.create_dataset("tSample", data=int(graph.steps))
        layers = f.create_group("layer")
        entries: list[tuple[str, object]] = []
        prev = None
        for l in graph.layers:
            if l.kind == "conv" and prev is None:
                entries.append(("input", l.in_shape))
            if l.kind == "dense" and prev is not None and prev.kind == "conv":
                entries.append(("flatten", None))
            entries.append(("dense_rec" if l.recurrent is not None else l.kind, l))
            prev = l
        for i, (kind, l) in enumerate(entries):
            g = layers.create_group(str(i))
            g.create_dataset("type", (1,), "S10", [kind.encode()])
            if kind == "input":
                g.create_dataset("shape", data=np.array(l, dtype=np.int64))
                continue
            if kind == "flatten":
                continue
            g.create_dataset("shape", data=np.array(l.out_shape, dtype=np.int64))
            g.create_dataset("weight", data=np.asarray(l.weight, dtype=np.float32))
            if l.recurrent is not None:
                g.create_dataset("weight_rec", data=np.asarray(l.recurrent, dtype=np.float32))
            if l.bias is not None:
                g.create_dataset("bias", data=np.asarray(l.bias, dtype=np.float32))
            if kind == "conv":
                g.create_dataset("stride", data=np.array(l.stride, dtype=np.int64))
                g.create_dataset("padding", data=np.array(l.padding, dtype=np.int64))
                g.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
                g.create_dataset("groups", data=1)
            nrn = g.create_group("neuron")
            nrn.create_dataset("type", (1,), "S10", [b"CUBA"])
            for key, val in (("iDecay", l.i_decay), ("vDecay", l.v_decay), ("vThMant", l.vth),
                             ("refDelay", 1), ("gradedSpike", False)):
                nrn.create_dataset(key, data=val)
    Path(path).write_bytes(buf.getvalue())


def _worker(net_path: str, in_path: str, out_path: str, steps: int) -> None:
    """Child process: run the netx network on all samples, save per-layer spikes."""
    import ahsar_deploy.lava_compat  # noqa: F401  (before any lava import)
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from tqdm import tqdm

    spikes = np.load(in_path)["spikes"]                   # (N, T, F), F in C, H, W order
    n, t_steps, f = spikes.shape
    net = netx.hdf5.Network(net_config=net_path, reset_interval=steps, reset_offset=1)
    n_layers = len(net.layers)
    total = n * t_steps + n_layers
    chunk = min(CHUNK, total)      # a short run is one chunk of exactly the steps it needs
    chunks = -(-total // chunk)
    in_shape = tuple(net.inp.shape)                       # Lava order: (F,) or (W, H, C)
    flat = spikes.reshape(n * t_steps, *in_shape[::-1])   # (steps, C, H, W)
    data = np.zeros((*in_shape, chunks * chunk), dtype=np.int32)
    data[..., :n * t_steps] = flat.transpose(*range(flat.ndim - 1, 0, -1), 0)
    src = Source(data=data)
    src.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sink = Sink(shape=layer.out.shape, buffer=chunk)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    record = [np.zeros((chunks * chunk, int(np.prod(s.a_in.shape))), dtype=bool) for s in sinks]
    # recurrent layers: clear the recurrent buffer after step kT + 1 + i (module docstring)
    clear: dict[int, list] = {}
    for i, layer in enumerate(net.layers):
        if hasattr(layer, "synapse_rec"):
            for k in range(n):
                clear.setdefault(k * t_steps + 1 + i, []).append(layer.synapse_rec.a_buff)
    stops = sorted(set(range(chunk, chunks * chunk + 1, chunk)) | set(clear))
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    done = 0
    try:
        with tqdm(total=chunks * chunk, desc="lava", unit="steps", file=sys.stderr) as bar:
            for stop in stops:
                net.run(condition=RunSteps(num_steps=stop - done), run_cfg=cfg)
                bar.update(stop - done)
                done = stop
                for a_buff in clear.get(stop, ()):
                    a_buff.set(np.zeros(a_buff.shape, dtype=np.int32))
                if stop % chunk == 0:
                    c = stop // chunk - 1
                    for rec, sink in zip(record, sinks):
                        d = sink.data.get()                       # (*Lava shape, chunk)
                        d = d.transpose(d.ndim - 1, *range(d.ndim - 2, -1, -1))   # (chunk, C, H, W)
                        rec[c * chunk:(c + 1) * chunk] = d.reshape(chunk, -1) != 0
    finally:
        net.stop()
    out = {}
    for i, rec in enumerate(record):
        start = 1 + i   # column of sample 0, step 0 for layer i
        out[f"layer{i}"] = rec[start:start + n * t_steps].reshape(n, t_steps, -1)
    np.savez(out_path, **out)


def _forward(stream, tail: list[bytes], show: bool) -> None:
    """Copy the child's stderr (progress bar, errors) to ours; keep the last 8 KiB."""
    for chunk in iter(lambda: stream.read1(4096), b""):
        if show:
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        tail.append(chunk)
        while sum(map(len, tail)) > 8192 and len(tail) > 1:
            tail.pop(0)


def _wait(proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait for the worker; every 0.1 s see whether Ctrl-C or SIGTERM came (interrupts.check
    raises Interrupted). Raises subprocess.TimeoutExpired after timeout_s seconds."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        interrupts.check()
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's process group (the worker and Lava's processes) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:   # already gone
        pass
    proc.wait()


def run(build_dir: str | Path, spikes: np.ndarray, steps: int, timeout_s: float = 1800,
        progress: bool = True) -> list[np.ndarray]:
    """Run BUILD/model.net in Lava on spikes (N, T, F); per-layer spikes (N, T, n) bool.
    Raises BackendError (failed, or no result within timeout_s seconds) and
    interrupts.Interrupted; the worker and Lava's processes are gone either way."""
    return run_many([(build_dir, spikes, steps)], timeout_s, progress)[0]


def run_many(jobs: list[tuple[str | Path, np.ndarray, int]], timeout_s: float = 1800,
             progress: bool = True) -> list[list[np.ndarray]]:
    """Run several builds, one after the other, in one Lava worker process (it pays
    Lava's and torch's import once): jobs are (build_dir, spikes (N, T, F), steps).
    Returns each job's per-layer spikes, as run() does; same errors, for all jobs."""
    with interrupts.temporary_directory("ahsar-lava-") as tmp:
        args = []
        for i, (build_dir, spikes, steps) in enumerate(jobs):
            in_path, out_path = os.path.join(tmp, f"in{i}.npz"), os.path.join(tmp, f"out{i}.npz")
            buf = io.BytesIO()   # in memory first (numpy's zip left open by a failed write complains when freed)
            np.savez(buf, spikes=np.asarray(spikes).astype(np.uint8))
            Path(in_path).write_bytes(buf.getvalue())
            args.append([str(Path(build_dir) / "model.net"), in_path, out_path, int(steps)])
        cmd = [sys.executable, "-c",
               "import sys, json; from exporters.lava import _worker\n"
               "for job in json.loads(sys.argv[1]): _worker(*job)",
               json.dumps(args)]
        tail: list[bytes] = []
        proc = pump = None
        try:
            with interrupts.held():   # an interrupt lands after `proc` is set: it is killed below
                # its own session: a terminal's Ctrl-C reaches only us, and killpg ends the
                # worker with every Lava process it forked
                # TMPDIR: multiprocessing's pymp-* folders go where we remove them, killed or not
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True, env={**os.environ, "TMPDIR": str(tmp)})
            show = progress and sys.stderr.isatty()
            pump = threading.Thread(target=_forward, args=(proc.stderr, tail, show), daemon=True)
            pump.start()
            _wait(proc, timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise BackendError(f"lava: no result within {timeout_s:.0f} s; run stopped "
                               f"(use fewer --samples or a larger --timeout)") from None
        except BaseException:
            if proc is not None:
                with interrupts.held():
                    _kill(proc)
            raise
        finally:
            if pump is not None:
                pump.join(timeout=5)
        if proc.returncode != 0 or not all(os.path.exists(a[2]) for a in args):
            lines = [ln for ln in b"".join(tail).decode(errors="replace").splitlines() if ln.strip()]
            raise BackendError(f"lava: simulation failed ({lines[-1].strip() if lines else f'exit {proc.returncode}'})")
        results = []
        for a in args:
            with np.load(a[2]) as z:
                results.append([z[f"layer{i}"] for i in range(len(z.files))])
        return results
