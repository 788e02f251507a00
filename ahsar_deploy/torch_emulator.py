"""The integer emulator (emulator.layer_int: Lava's fixed-point Dense/Conv + LIF) in torch,
on any torch device, batched over samples; spike for spike equal to the numpy emulator.

Why a second implementation: the numpy emulator is the readable reference, layer by layer
over the whole data set; this one runs every layer on a block of samples at a time (the
block's state stays in cache) and does the synaptic products in integers, so it runs near
the machine's limit on a CPU and on an accelerator where torch has one.

Exactness, per step (Loihi's maths as in emulator.py's docstring; the dtype chosen is exact):
- Dense synaptic input W x on the CPU: int8 x int8 -> int32 matrix products
  (torch._int_mm, oneDNN), exact while n_in * max|W| < 2**31. Loihi's weights are 8-bit
  mantissas, even integers in [-256, 254] (hw_targets/loihi.py): W / 2**k, k the largest
  power of two dividing every weight, fits int8 and takes one product; otherwise
  W = 128 * (W >> 7) + (W & 127) takes two, summed in int32. Binary (0/1) inputs only;
  graded inputs, wider weights and other devices use float32 when every partial sum stays
  below 2**24 (exact; refused if CUDA's TF32 is on), else float64 (exact below 2**53).
- Conv: torch's conv2d in float32 or float64 under the same bounds, wrapped to signed 24 bit.
- Neuron state u, v in float64: integers below 2**24 times a 12-bit decay factor
  keep / 4096 give products below 2**36, exact in float64's 53-bit mantissa, and
  trunc(u * keep / 4096) is Lava's sign(u) * (|u * keep| >> 12). Sums stay exact below 2**53,
  far above the 24-bit states and any synaptic input a layer within the target's limits makes.
- u wraps at 24 bits exactly as Lava's two-sided where (skipped for a block whose summed
  |input| per neuron cannot reach the wrap); v saturates by a clamp.
- On the CPU the neuron update runs instead in lif_kernel.py's fused loop (numba, int64,
  exact), one pass per step in place of about ten torch operations: about 2x faster on
  the MNIST 784-1000-10 MLP (benchmarks/emulator_vs_lava.py). FUSED = False keeps torch's.
Spikes come back as numpy bool arrays (N, T, n_out) per layer, as emulator.run returns them.
"""
from __future__ import annotations

import numpy as np

from hw_targets import LoihiTarget, LOIHI

from . import interrupts
from .emulator import _zero_reset
from .errors import BackendError
from .ir import DeployGraph, Layer

BLOCK_ELEMENTS = 1 << 16     # samples per block: about this many neuron states of the widest layer (in cache)
EXP_LIMIT = 32               # |weight_exp| the int64 / float64 maths shift exactly (Lava takes any)
FUSED = True                 # on the CPU, the neuron update runs in lif_kernel's fused loop (numba); False:
                             # torch's ops, as on other devices (tests run both)


def _device(device):
    import torch
    try:
        dev = torch.device(device)
        if dev.type == "meta":
            raise RuntimeError("a meta device holds no data")
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as e:   # e.g. "Torch not compiled with CUDA enabled"
        why = " ".join(str(e).split())
        why = why if len(why) <= 120 else why[:why.rfind(" ", 0, 120)] + " ..."
        raise BackendError(f"--device {device}: torch cannot use it here ({why}); use --device cpu") from None
    return dev


class _Synapses:
    """One layer's synaptic product, in the exact dtype its weights and inputs allow."""

    def __init__(self, layer: Layer, binary: bool, dev):
        import torch
        self.layer, self.dev = layer, dev
        w = np.asarray(layer.weight)
        if not np.array_equal(w, np.rint(w)):
            raise ValueError(f"{layer.name}: weights are not integers; the integer emulator runs quantized builds")
        w = w.astype(np.int64)
        reach = int(np.abs(w).sum(axis=tuple(range(1, w.ndim))).max(initial=0))   # max summed |w| per neuron
        self.int8 = (layer.kind == "dense" and binary and dev.type == "cpu"
                     and np.abs(w).max(initial=0) < 2 ** 14 and reach < 2 ** 31)
        if self.int8:
            # Loihi's weights are even: W = g * W' with g the largest power of two dividing them
            # all; W' in int8 takes one product, else W' = 128 * hi + lo, hi and lo int8, two
            bits = int(np.bitwise_or.reduce(np.abs(w), axis=None))   # lowest set bit over all |w|
            self.g = bits & -bits if bits else 1
            wg = w // self.g
            self.single = bool(np.abs(wg).max(initial=0) <= 127)
            self.lo = torch.from_numpy((wg if self.single else wg & 127).astype(np.int8).T.copy())
            self.hi = None if self.single else torch.from_numpy((wg >> 7).astype(np.int8).T.copy())
            return
        exact32 = binary and reach < 2 ** 24 and not (dev.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
        self.dtype = torch.float32 if exact32 else torch.float64
        wt = torch.from_numpy(w).to(self.dtype)
        self.w = (wt if layer.kind == "conv" else wt.T.contiguous()).to(dev)

    def sums(self, x):
        """x (B, T, n_in) 0/1 int8 (or graded) on the device -> (a, g): the integer synaptic
        sums W x / g (B, T, n_out) before the weight exponent (int32 from the int8 product,
        else exact integers in float32/64; a conv's wrapped at signed 24 bit as Lava's conv
        output is) and g, the int8 path's common factor of the weights (else 1)."""
        import torch
        b, t = x.shape[:2]
        layer = self.layer
        if self.int8:
            xi = x.reshape(b * t, x.shape[2])
            a = torch._int_mm(xi, self.lo)
            if not self.single:
                a.add_(torch._int_mm(xi, self.hi), alpha=128)
            return a.reshape(b, t, layer.n_out), self.g
        if layer.kind == "conv":
            xi = x.reshape(b * t, *layer.in_shape).to(self.dtype)
            a = torch.nn.functional.conv2d(xi, self.w, stride=layer.stride, padding=layer.padding)
            m = 2 ** 23
            return a.reshape(b, t, layer.n_out).to(torch.float64).add_(m).remainder_(2 * m).sub_(m), 1
        return (x.reshape(b * t, x.shape[2]).to(self.dtype) @ self.w).reshape(b, t, layer.n_out), 1

    def __call__(self, x, shift: int):
        """x as for sums -> integer input (B, T, n_out) float64: Dense a_out << weight_exp
        (>> rounds to -inf), times 2**shift (Lava's << 6 into the neuron)."""
        import torch
        a, g = self.sums(x)
        a = a.to(torch.float64)
        e = 0 if self.layer.kind == "conv" else self.layer.weight_exp   # a conv ignores weight_exp
        return a.mul_(g * 2.0 ** (e + shift)) if e >= 0 else a.mul_(g * 2.0 ** e).floor_().mul_(2.0 ** shift)


def _layer_fused(layer: Layer, syn: _Synapses, rec, bias, x, target: LoihiTarget, events: dict | None = None):
    """_layer on the CPU: the synaptic sums from torch, the neuron update in one fused loop
    (lif_kernel.lif_fixed, numba); rec (n, n) and bias (n,) int64 numpy as it takes them."""
    import torch
    from .lif_kernel import lif_fixed
    a, g = syn.sums(x)
    acc = a.numpy() if a.dtype == torch.int32 else torch.round(a).to(torch.int64).numpy()
    out = np.empty(acc.shape, dtype=bool)
    wraps, sats = lif_fixed(np.ascontiguousarray(acc), g, 0 if layer.kind == "conv" else layer.weight_exp,
                            target.act_shift, rec, bias, target.decay_unity - layer.i_decay,
                            target.decay_unity - layer.v_decay, target.state_max,
                            int(layer.vth) << target.vth_shift, out)
    if events is not None:
        events["u_wrap"] = events.get("u_wrap", 0) + wraps
        events["v_saturate"] = events.get("v_saturate", 0) + sats
    return torch.from_numpy(out)


def _layer(layer: Layer, syn: _Synapses, rec, bias, x, target: LoihiTarget, events: dict | None = None):
    """One fixed-point layer on a block x (B, T, n_in) -> spikes (B, T, n_out) bool, on x's
    device; events as emulator.layer_int counts them (u wraps, v saturations)."""
    import torch
    m = float(target.state_max)
    a = syn(x, target.act_shift)
    b, steps, n = a.shape
    cu = (target.decay_unity - layer.i_decay) / target.decay_unity     # exact 12-bit fractions
    cv = (target.decay_unity - layer.v_decay) / target.decay_unity
    vth = float(int(layer.vth) << target.vth_shift)
    # |u| never exceeds the summed |input| so far: below m for the whole sample means no wrap
    lo, hi = torch.aminmax(a) if a.numel() else (torch.zeros(()), torch.zeros(()))   # T or n may be 0
    wraps = rec is not None or (steps * max(-float(lo), float(hi)) >= m and bool((a.abs().sum(dim=1) >= m).any()))
    u = torch.zeros(b, n, dtype=torch.float64, device=a.device)
    v = torch.zeros_like(u)
    out = torch.empty(b, steps, n, dtype=torch.bool, device=a.device)
    s = None
    for t in range(steps):
        a_t = a[:, t]
        if rec is not None and s is not None:
            r = s.to(rec.dtype) @ rec
            a_t = a_t + (r * 2.0 ** layer.weight_exp if layer.weight_exp >= 0
                         else torch.floor(r * 2.0 ** layer.weight_exp)) * 2.0 ** target.act_shift
        u.mul_(cu).trunc_().add_(a_t)
        if wraps:
            dc = u
            u = torch.where(dc > m, dc - 2 * m, dc)
            u = torch.where(u <= -m, dc + 2 * m, u)
            if events is not None:
                events["u_wrap"] = events.get("u_wrap", 0) + int(((dc > m) | (dc <= -m)).sum())
        v.mul_(cv).trunc_().add_(u)
        if bias is not None:
            v.add_(bias)
        if events is not None:
            events["v_saturate"] = events.get("v_saturate", 0) + int(((v > m - 1) | (v < -m + 1)).sum())
        v.clamp_(-m + 1, m - 1)
        s = torch.gt(v, vth, out=out[:, t])
        v.mul_(torch.logical_not(s))                  # reset to 0 (v > vth > 0: +0.0); faster than masked_fill_
    return out


def layer_int(layer: Layer, x: np.ndarray, target: LoihiTarget = LOIHI, events: dict | None = None,
              device="cpu") -> np.ndarray:
    """emulator.layer_int on a torch device: one fixed-point layer on spikes x (N, T, n_in)
    -> spikes (N, T, n_out) bool numpy, with the same `events` counts ("u_wrap",
    "v_saturate" neuron-steps, added to the dict). Raises as run() does."""
    graph = DeployGraph(layers=(layer,), n_inputs=layer.n_in, steps=int(np.shape(x)[1]), dataset="",
                        encoding="", method="", source_sha256="")
    return run(graph, x, device=device, target=target, events=events)[0]


def run(graph: DeployGraph, spikes: np.ndarray, device="cpu", target: LoihiTarget = LOIHI,
        block: int | None = None, events: dict | None = None, threads: int | None = None) -> list[np.ndarray]:
    """Run a quantized (integer) graph on input spikes (N, T, F) on a torch device.

    device: "cpu", "cuda", "cuda:1", ... (a torch.device string). block: samples per block
    (default: about BLOCK_ELEMENTS neuron states of the widest layer). threads: on the CPU,
    blocks run in parallel on this many threads (default torch.get_num_threads()), each
    with one torch thread (set process-wide for the run, then restored): the per-step
    operations are small, and torch's own threads would meet at a barrier after each one,
    which costs more than the work on a loaded machine.
    Returns per-layer spikes [(N, T, n_out) bool numpy], identical to emulator.run(graph,
    spikes, integer=True, device=None). events: a dict to which the neuron-steps where u
    wrapped ("u_wrap") and v saturated ("v_saturate") in any layer are added.
    Raises ValueError for a graph that is not quantized, a reset other than Loihi's, a conv
    layer with a weight exponent, |weight_exp| > EXP_LIMIT or |vth| >= 2**40 (not exact in
    int64 after the shifts; far outside any chip's grid) or a block that is not a positive
    integer; BackendError for a device torch cannot use."""
    import torch
    if not graph.quantized:
        raise ValueError("the torch emulator runs quantized builds; use emulator.run(graph, x, integer=False) "
                         "for the float model")
    for layer in graph.layers:
        _zero_reset(layer)
        if layer.kind == "conv" and layer.weight_exp != 0:
            raise ValueError(f"{layer.name}: Lava's conv ignores weight_exp; it must be 0")
        if not -EXP_LIMIT <= layer.weight_exp <= EXP_LIMIT or abs(int(layer.vth)) >= 2 ** 40:
            raise ValueError(f"{layer.name}: weight_exp {layer.weight_exp}, vth {layer.vth}: beyond what the "
                             f"integer emulator computes exactly (|weight_exp| <= {EXP_LIMIT}, |vth| < 2**40); "
                             f"a {target.name} build has weight_exp 0 and vth <= {target.vth_max}")
    if block is not None and (isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1):
        raise ValueError(f"block={block!r}: samples per block must be a positive integer")
    dev = _device(device)
    if events is not None:
        events.setdefault("u_wrap", 0)
        events.setdefault("v_saturate", 0)
    x = np.asarray(spikes)
    binary = x.dtype == bool or bool(((x == 0) | (x == 1)).all())
    syns, recs, biases = [], [], []
    fused = dev.type == "cpu" and FUSED
    step = _layer_fused if fused else _layer
    for i, layer in enumerate(graph.layers):   # spikes between layers are always 0/1
        syns.append(_Synapses(layer, binary or i > 0, dev))
        if fused:   # lif_kernel takes integers: R transposed, bias << bias_exp (as emulator.layer_int)
            if layer.recurrent is not None and not np.array_equal(layer.recurrent, np.rint(layer.recurrent)):
                raise ValueError(f"{layer.name}: recurrent weights are not integers; the integer emulator runs "
                                 f"quantized builds")
            recs.append(None if layer.recurrent is None else
                        np.ascontiguousarray(np.asarray(layer.recurrent).astype(np.int64).T))
            biases.append(None if layer.bias is None else
                          np.asarray(layer.bias, dtype=np.int64) << target.bias_exp)
            continue
        recs.append(None if layer.recurrent is None else
                    torch.from_numpy(np.asarray(layer.recurrent, dtype=np.float64).T.copy()).to(dev))
        biases.append(None if layer.bias is None else
                      torch.from_numpy(np.asarray(layer.bias, dtype=np.float64) * 2.0 ** target.bias_exp).to(dev))
    widest = max(max(l.n_out for l in graph.layers), x.shape[-1]) if graph.layers else 1
    block = block or max(1, BLOCK_ELEMENTS // widest)
    outs = [np.empty((x.shape[0], x.shape[1], l.n_out), dtype=bool) for l in graph.layers]
    in_dtype = torch.int8 if binary else torch.float64

    def one_block(i: int) -> dict:
        interrupts.check()
        ev = None if events is None else {}
        h = torch.from_numpy(np.ascontiguousarray(x[i:i + block])).to(in_dtype).to(dev)
        for k, layer in enumerate(graph.layers):
            s = step(layer, syns[k], recs[k], biases[k], h, target, ev)
            outs[k][i:i + block] = s.cpu().numpy()
            h = s.view(torch.int8) if syns[k + 1:k + 2] and syns[k + 1].int8 else s
        return ev or {}

    starts = range(0, x.shape[0], block)
    if dev.type != "cpu":
        found = [one_block(i) for i in starts]
    else:   # blocks in parallel, one torch thread each: no barrier between threads per small op
        from concurrent.futures import ThreadPoolExecutor
        before = torch.get_num_threads()
        workers = max(1, min(len(starts), threads or before))
        torch.set_num_threads(1)
        try:
            if workers == 1:
                found = [one_block(i) for i in starts]
            else:   # on an interrupt, blocks not yet started are dropped, running ones end
                pool = ThreadPoolExecutor(workers)
                try:
                    found = list(pool.map(one_block, starts))
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            torch.set_num_threads(before)
    for ev in found:
        for key, n in ev.items():
            events[key] += n
    return outs
