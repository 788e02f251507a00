"""Fuse a sum or average pooling into the layer that follows it (exact in float).

Pooling is not an IR layer (Loihi has no pooling neuron; netx raises NotImplementedError
for `pool`). A pooling with kernel k and stride k, no padding, on an input of shape
(C, H, W) is linear, so it folds into the float weights of the following layer:

- pool -> dense: W_fused[o, c, h, w] = s * W[o, c, h // k, w // k] for h < k*(H // k),
  w < k*(W // k) (rows and columns the pooling drops get weight 0); W_fused has shape
  (n_out, C*H*W) in torch's C, H, W flatten order.
- pool -> conv (kernel kh x kw, stride st, padding p): kernel expanded to (k*kh, k*kw),
  each tap repeated over a k x k block and multiplied by s, stride k*st, padding k*p.
  The output size is the same (floor((H + 2kp - k*kh) / (k*st)) + 1 equals the pooled
  conv's for any H, including H not divisible by k).
with s = 1 for sum pooling and 1/k**2 for average pooling. Exact in real arithmetic:
each output is the same sum of products; in float only the summation order differs.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedLayerError
from ..ir import Layer

POOL_MODES = ("sum", "avg")


def pooled_shape(in_shape: tuple[int, int, int], k: int) -> tuple[int, int, int]:
    c, h, w = in_shape
    return (c, h // k, w // k)


def _check(in_shape, k: int, mode: str, where: str) -> None:
    if mode not in POOL_MODES:
        raise UnsupportedLayerError(f"{where}: pooling mode {mode!r}; supported: {', '.join(POOL_MODES)}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise UnsupportedLayerError(f"{where}: pooling kernel {k!r} must be a positive integer")
    if len(in_shape) != 3 or min(in_shape) < 1 or in_shape[1] < k or in_shape[2] < k:
        raise UnsupportedLayerError(f"{where}: pooling input shape {tuple(in_shape)} smaller than kernel {k}")


def fuse_pool_dense(weight: np.ndarray, in_shape: tuple[int, int, int], k: int,
                    mode: str = "sum") -> np.ndarray:
    """Dense weight (n_out, C*(H//k)*(W//k)) after a k x k pooling of (C, H, W) ->
    fused weight (n_out, C*H*W)."""
    _check(in_shape, k, mode, "fuse")
    c, h, w = in_shape
    ph, pw = h // k, w // k
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[1] != c * ph * pw:
        raise UnsupportedLayerError(f"fuse: dense weight {weight.shape} does not take the pooled "
                                    f"input ({c}, {ph}, {pw})")
    s = 1.0 if mode == "sum" else 1.0 / (k * k)
    wp = weight.reshape(-1, c, ph, pw)
    up = np.repeat(np.repeat(wp, k, axis=2), k, axis=3) * s       # (n_out, c, k*ph, k*pw)
    out = np.zeros((weight.shape[0], c, h, w))
    out[:, :, :k * ph, :k * pw] = up
    return out.reshape(weight.shape[0], c * h * w)


def fuse_pool_conv(weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                   k: int, mode: str = "sum") -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Conv kernel (C_out, C_in, kh, kw) with stride and padding applied after a k x k
    pooling -> (kernel (C_out, C_in, k*kh, k*kw), stride * k, padding * k)."""
    _check((1, k, k), k, mode, "fuse")
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise UnsupportedLayerError(f"fuse: conv weight must be 4-d (C_out, C_in, kh, kw), got {weight.shape}")
    s = 1.0 if mode == "sum" else 1.0 / (k * k)
    fused = np.repeat(np.repeat(weight, k, axis=2), k, axis=3) * s
    return (fused, tuple(int(v) * k for v in stride), tuple(int(v) * k for v in padding))


def fuse_pool(layer: Layer, in_shape: tuple[int, int, int], k: int, mode: str = "sum") -> Layer:
    """The float layer that follows a k x k (stride k) pooling of an input of shape
    in_shape (C, H, W), rewritten to take the unpooled input directly.

    For a conv layer, layer.in_shape must be the pooled shape (C, H//k, W//k); the
    result has in_shape = in_shape. For a dense layer, layer.n_in must be C*(H//k)*(W//k).
    """
    where = f"fuse: {layer.name}"
    if layer.quantized:
        raise UnsupportedLayerError(f"{where}: fuse pooling before calibration (float weights)")
    _check(tuple(in_shape), k, mode, where)
    pooled = pooled_shape(tuple(in_shape), k)
    if layer.kind == "conv":
        if tuple(layer.in_shape or ()) != pooled:
            raise UnsupportedLayerError(f"{where}: conv input {layer.in_shape} is not the pooled "
                                        f"shape {pooled} of {tuple(in_shape)}")
        w, stride, padding = fuse_pool_conv(layer.weight, layer.stride, layer.padding, k, mode)
        fused = layer.with_(weight=w, stride=stride, padding=padding, in_shape=tuple(in_shape))
        if fused.out_shape != layer.out_shape:   # cannot happen (see module docstring); guard
            raise UnsupportedLayerError(f"{where}: fused output {fused.out_shape} != {layer.out_shape}")
        return fused
    return layer.with_(weight=fuse_pool_dense(layer.weight, tuple(in_shape), k, mode))
