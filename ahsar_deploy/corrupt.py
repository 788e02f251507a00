"""Standard image corruptions at three severities, for a robustness benchmark on MNIST and
Fashion-MNIST.

Contract
--------
Images are float32 intensities in [0, 1]. :func:`corrupt` takes a batch shaped
(N, F) (flattened images; ``shape`` gives (C, H, W) or (H, W), default (28, 28) when
F = 784), (N, H, W) or (N, C, H, W), and returns a new float32 array of the same shape,
clipped to [0, 1]. The input is never written to (it may be a read-only memory map).
The random draws come from ``np.random.default_rng(seed)`` only, so a seed gives the same
output every time. Severity 0 is the clean reference (a float32 copy of x); 1, 2, 3 are
mild, medium, strong.

Definitions and parameters (:data:`PARAMS`)
-------------------------------------------
Source: N. Mu and J. Gilmer, "MNIST-C: A Robustness Benchmark for Computer Vision",
arXiv:1906.02337 (2019), code github.com/google-research/mnist-c, file ``corruptions.py``.
Each function there has a 5-level parameter table and a default ``severity=`` argument;
we take that default's value as MNIST-C's and make it our severity 2 where it exists,
with severities 1 and 3 bracketing it (neighbouring levels of MNIST-C's own table where
the table has them). ``x`` below is one image, ``c`` the parameter.

=============== ================================ ==================== =====================
kind            definition                       severity 1 / 2 / 3   source of the values
=============== ================================ ==================== =====================
gaussian_noise  clip(x + c * N(0, 1) per pixel)  sigma 0.1 / 0.2 /0.3 ours [1]
salt_pepper     a fraction c of the pixels set   0.09 / 0.17 / 0.27   MNIST-C impulse_noise
                to 0 or 1 (1/2 each)                                  (default 0.17; levels
                                                                      3, 4, 5 of its table)
blur            Gaussian filter, sigma c pixels  1 / 2 / 3 pixels     MNIST-C gaussian_blur
                                                                      (default 2; levels
                                                                      1, 2, 3) [2]
contrast        (x - mean) * c + mean, mean per  0.2 / 0.1 / 0.05     MNIST-C contrast
                image (and channel)                                   (default 0.1; levels
                                                                      3, 4, 5) [2]
brightness      clip(x + c)                      +0.3 / +0.5 / +0.7   MNIST-C brightness
                                                                      (default 0.5 = its
                                                                      level 5); 0.3 its
                                                                      level 3; 0.7 ours [3]
translate       shift by c pixels along both     2 / 3 / 4 pixels     MNIST-C translate
                axes, each sign drawn per image                       (default 3; levels
                (one of 4 diagonals), zero fill                       2, 3, 4)
rotate          rotate c degrees about the image 11.46 / 22.92 /      MNIST-C rotate: 0.2,
                centre ((H-1)/2, (W-1)/2), sign  34.38 degrees        0.4, 0.6 rad (default
                drawn per image, bilinear, zero                       0.4 rad; levels 1-3)
                fill outside the image
=============== ================================ ==================== =====================

[1] MNIST-C has no Gaussian noise in its published 15 corruptions (it has shot and impulse
    noise); its code table is sigma 0.08, 0.12, 0.18, 0.26, 0.38. Sigma 0.2 is severity 2
    because this project's earlier measurements used Gaussian noise sigma 0.2 clipped to
    [0, 1].
[2] gaussian_blur and contrast are in MNIST-C's code but not in its published dataset.
    Blur uses MNIST-C's filter (skimage.filters.gaussian = scipy.ndimage.gaussian_filter,
    mode 'nearest', truncated at 4 sigma), on the H and W axes only.
[3] MNIST-C adds c to the HSV value channel; for a grey image that is exactly clip(x + c).

Salt-and-pepper replaces exactly round(c * C*H*W) distinct pixels of each image (drawn
without replacement); each becomes 0 or 1 with probability 1/2 (ours: MNIST-C calls
skimage.util.random_noise(mode='s&p', amount=c), whose count is random or drawn with
replacement depending on the skimage version). MNIST-C translates and rotates with
skimage.transform.warp (bilinear, 0 outside); ours is scipy.ndimage.rotate with the same map. Translate and rotate move
all channels of an image together. Units: blur sigma and translate in pixels, rotate in
degrees (positive = counter-clockwise as displayed, row 0 at the top, like ``np.rot90``).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

KINDS = ("gaussian_noise", "salt_pepper", "blur", "contrast", "brightness", "translate",
         "rotate")
SEVERITIES = (1, 2, 3)

# The parameter of each kind at severities 1, 2, 3 (see the module docstring for sources).
PARAMS = {
    "gaussian_noise": {1: 0.1, 2: 0.2, 3: 0.3},          # noise sigma (intensity units)
    "salt_pepper": {1: 0.09, 2: 0.17, 3: 0.27},           # fraction of pixels replaced
    "blur": {1: 1.0, 2: 2.0, 3: 3.0},                     # Gaussian sigma, pixels
    "contrast": {1: 0.2, 2: 0.1, 3: 0.05},                # factor on deviations from mean
    "brightness": {1: 0.3, 2: 0.5, 3: 0.7},               # constant added (intensity units)
    "translate": {1: 2, 2: 3, 3: 4},                      # pixels along each axis
    "rotate": {s: math.degrees(0.2 * s) for s in (1, 2, 3)},   # degrees (0.2, 0.4, 0.6 rad)
}

_DEFAULT_SHAPE = (28, 28)


def corrupt(x, kind: str, severity: int, shape=None, seed: int = 0) -> np.ndarray:
    """Corrupt a batch of images.

    Args:
        x: array-like of images with intensities in [0, 1], shaped (N, F) (flattened),
            (N, H, W) or (N, C, H, W). Any real dtype, values in [0, 1]; never modified.
        kind: one of :data:`KINDS`.
        severity: 0 (clean copy) or one of :data:`SEVERITIES`; the parameter is
            ``PARAMS[kind][severity]`` (units in the module docstring).
        shape: for (N, F) input only: the image shape (C, H, W) or (H, W) with product F;
            None means (28, 28), which needs F = 784. For 3-d / 4-d input it may be omitted
            or must equal ``x.shape[1:]``.
        seed: seed of ``np.random.default_rng``; the same seed gives the same output.

    Returns:
        float32 array of x's shape: the corrupted images clipped to [0, 1]. For severity 0,
        a float32 copy of x.

    Raises:
        ValueError: unknown kind or severity, a seed that is no integer, an x / shape that
            cannot be images, or values that are no intensities in [0, 1] (NaN, inf, 0..255)
            (one line naming the bad value and the valid choices).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown corruption {kind!r}: choose one of {', '.join(KINDS)}")
    valid = (0,) + SEVERITIES
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or severity not in valid:
        raise ValueError(f"unknown severity {severity!r}: choose one of "
                         f"{', '.join(map(str, valid))} (0 = the clean copy)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r}: give an integer (the same seed gives the same corruption)")
    if shape is not None and (isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__")
                              or not all(isinstance(v, (int, np.integer)) for v in shape)):
        raise ValueError(f"shape={shape!r}: give a tuple of integers, (C, H, W) or (H, W)")
    x = np.asarray(x)
    img = _image_shape(x.shape, shape)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"x of dtype {x.dtype}: give real intensities in [0, 1]")
    if x.size and not np.isfinite(x).all():
        raise ValueError("x holds NaN or infinite values: give intensities in [0, 1]")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"x holds values in [{float(x.min()):g}, {float(x.max()):g}], not intensities in "
                         f"[0, 1]: scale the images first (8-bit: divide by 255)")
    out = np.array(x, dtype=np.float32, copy=True)   # never a view of x
    if severity == 0:
        return out
    x4 = out.reshape((x.shape[0],) + img)
    rng = np.random.default_rng(seed)
    c = PARAMS[kind][severity]
    y = _APPLY[kind](x4, c, rng)
    return np.clip(y, 0.0, 1.0, out=y).astype(np.float32, copy=False).reshape(x.shape)


def _image_shape(xshape, shape):
    """(C, H, W) of each image for a batch of shape ``xshape``, or a one-line ValueError."""
    if len(xshape) == 2:
        f = xshape[1]
        if shape is None:
            if f != 784:
                raise ValueError(f"x of shape {tuple(xshape)} cannot be images: {f} features "
                                 "is not the default 28*28 = 784; give shape=(C, H, W) or "
                                 f"(H, W) whose product is {f}")
            return (1,) + _DEFAULT_SHAPE
        img = tuple(int(s) for s in shape)
        if len(img) not in (2, 3) or math.prod(img) != f or min(img) < 1:
            raise ValueError(f"shape={tuple(shape)} does not fit x of shape {tuple(xshape)}: "
                             f"give (C, H, W) or (H, W) whose product is {f}")
        return img if len(img) == 3 else (1,) + img
    if len(xshape) in (3, 4):
        img = tuple(xshape[1:])
        if shape is not None and tuple(int(s) for s in shape) != img:
            raise ValueError(f"shape={tuple(shape)} does not match x of shape "
                             f"{tuple(xshape)}: omit shape or give {img}")
        if min(img) < 1:
            raise ValueError(f"x of shape {tuple(xshape)} cannot be images: "
                             "each of C, H, W must be at least 1")
        return img if len(img) == 3 else (1,) + img
    raise ValueError(f"x of shape {tuple(xshape)} cannot be images: give (N, F), "
                     "(N, H, W) or (N, C, H, W)")


# ---- the corruptions, each on (N, C, H, W) float32 (a private copy) -------------------

def _gaussian_noise(x4, sigma, rng):
    return x4 + np.float32(sigma) * rng.standard_normal(x4.shape, dtype=np.float32)


def _salt_pepper(x4, frac, rng):
    n = x4.shape[0]
    flat = x4.reshape(n, math.prod(x4.shape[1:]))
    k = int(round(frac * flat.shape[1]))
    if n == 0 or k == 0:
        return x4
    idx = np.argpartition(rng.random(flat.shape), k - 1, axis=1)[:, :k]
    vals = rng.integers(0, 2, size=(n, k)).astype(np.float32)
    np.put_along_axis(flat, idx, vals, axis=1)
    return x4


def _blur(x4, sigma, rng):
    return ndimage.gaussian_filter(x4, sigma=(0, 0, sigma, sigma), mode="nearest",
                                   truncate=4.0)


def _contrast(x4, c, rng):
    mean = x4.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    return (x4 - mean) * np.float32(c) + mean


def _brightness(x4, c, rng):
    return x4 + np.float32(c)


def _translate(x4, pixels, rng):
    signs = rng.integers(0, 2, size=(x4.shape[0], 2)) * 2 - 1    # (dy, dx) signs per image
    out = np.empty_like(x4)
    for sy in (-1, 1):
        for sx in (-1, 1):
            m = (signs[:, 0] == sy) & (signs[:, 1] == sx)
            if m.any():
                out[m] = _shift(x4[m], sy * pixels, sx * pixels)
    return out


def _rotate(x4, degrees, rng):
    signs = rng.integers(0, 2, size=x4.shape[0]) * 2 - 1
    out = np.empty_like(x4)
    for s in (-1, 1):
        m = signs == s
        if m.any():
            out[m] = _rotate_by(x4[m], s * degrees)
    return out


_APPLY = {"gaussian_noise": _gaussian_noise, "salt_pepper": _salt_pepper, "blur": _blur,
          "contrast": _contrast, "brightness": _brightness, "translate": _translate,
          "rotate": _rotate}


def _shift(x4, dy: int, dx: int) -> np.ndarray:
    """Images (..., H, W) moved dy pixels down and dx pixels right (negative: up / left);
    the pixels moved in are 0. Returns a new array of x4's dtype."""
    h, w = x4.shape[-2:]
    out = np.zeros_like(x4)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_r = slice(max(0, -dy), h - max(0, dy))
    dst_r = slice(max(0, dy), h - max(0, -dy))
    src_c = slice(max(0, -dx), w - max(0, dx))
    dst_c = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_r, dst_c] = x4[..., src_r, src_c]
    return out


def _rotate_by(x4, degrees: float) -> np.ndarray:
    """Images (..., H, W) rotated by ``degrees`` counter-clockwise as displayed (row 0 at
    the top; +90 equals ``np.rot90``) about the centre ((H-1)/2, (W-1)/2), with bilinear
    interpolation; the image is taken as 0 outside its pixels (scipy.ndimage.rotate,
    order 1, mode 'grid-constant'). Returns float32."""
    out = ndimage.rotate(np.asarray(x4, dtype=np.float32), degrees, axes=(-1, -2), reshape=False, order=1,
                         mode="grid-constant", cval=0.0)
    return out.astype(np.float32, copy=False)
