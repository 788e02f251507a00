"""Datasets (offline only) and the spike encoding shared by training and every backend.

Every backend (float model, integer emulator, Lava) is fed the same spike trains from
:func:`encode`, so comparisons between them see identical inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DatasetError

DATASETS = ("digits",)


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, F) float64 intensities in [0, 1]
    y: np.ndarray  # (N,) int64 labels


@dataclass(frozen=True)
class Dataset:
    name: str
    n_features: int
    n_classes: int
    train: Split
    val: Split
    test: Split


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
        return Dataset("digits", 64, 10, tr, val, te)
    raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def encode(x: np.ndarray, steps: int) -> np.ndarray:
    """Deterministic rate code: (N, F) intensities in [0, 1] -> (N, T, F) uint8 spikes.

    Each input integrates its intensity and spikes when the sum reaches 1 (then
    subtracts 1), so intensity p gives about p*T evenly spaced spikes, with no random
    numbers: every backend and every run sees the same trains.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    acc = np.zeros_like(x)
    out = np.zeros((x.shape[0], steps, x.shape[1]), dtype=np.uint8)
    for t in range(steps):
        acc += x
        s = acc >= 1.0 - 1e-9
        acc[s] -= 1.0
        out[:, t] = s
    return out
