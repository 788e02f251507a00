"""Argument checks shared by the CLI and the Python API: one rule and one message each.

The CLI calls them with cli=True before it calls the API, which calls them again with
cli=False, so both refuse the same values with the same one-line DeployError; only the
parameter's spelling differs: the CLI's flag (``--samples 0``) or the API's keyword
(``samples=0``). Imports nothing heavy (the CLI loads this before torch).
"""
from __future__ import annotations

import math
from numbers import Integral, Real

from .errors import DeployError


def spelled(name: str, value, cli: bool) -> str:
    """A parameter as the user wrote it: "--calib-samples 0" (cli) or "calib_samples=0"."""
    return f"--{name.replace('_', '-')} {value}" if cli else f"{name}={value!r}"


def _whole(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def at_least(name: str, value, low: int, what: str, cli: bool = False) -> None:
    """DeployError unless value is None or a whole number >= low; `what` says what it counts."""
    if value is not None and not (_whole(value) and value >= low):
        raise DeployError(f"{spelled(name, value, cli)}: must be a whole number of {what}, at least {low}")


def seconds(name: str, value, cli: bool = False) -> None:
    """DeployError unless value is a finite number of seconds > 0."""
    if not (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise DeployError(f"{spelled(name, value, cli)}: must be a positive, finite number of seconds")


def run_args(samples=None, timeout=1800, cli: bool = False) -> None:
    """`ahsar run` / `ahsar energy` and ad.run / ad.energy / ad.inputs: samples None (all)
    or >= 1, timeout > 0 seconds."""
    at_least("samples", samples, 1, "test samples (leave it out for all)", cli)
    seconds("timeout", timeout, cli)


def train_args(steps=None, epochs=1, batch=None, augment_shift=0, train_samples=None, cli: bool = False) -> None:
    """`ahsar train` and train.train: steps, epochs, batch, train_samples >= 1 (None: the
    default), augment_shift >= 0."""
    for name, v, what in (("steps", steps, "time steps"), ("epochs", epochs, "epochs"),
                          ("batch", batch, "samples per batch"), ("train_samples", train_samples, "samples")):
        at_least(name, v, 1, what, cli)
    at_least("augment_shift", augment_shift, 0, "pixels", cli)


def export_args(calib_samples=512, steps=None, cli: bool = False) -> None:
    """`ahsar export` and ad.export / build.export: calib_samples >= 1, steps None or >= 1."""
    at_least("calib_samples", calib_samples, 1, "calibration samples", cli)
    at_least("steps", steps, 1, "time steps", cli)
