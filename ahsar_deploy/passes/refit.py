"""Convex readout refit after quantization (METHODS.md 4; issue 5, optional).

Udupi et al., arXiv 2605.08022, after Ergen et al., ICLR 2023 (pilancilab/Threshold-
networks): with the hidden spike patterns fixed, fitting the readout weights is a convex
(LASSO) problem. Here the patterns are the ones the integer network itself produces on
calibration data, and the regression target is the folded float network's readout drive
(its summed synaptic input, W_f . counts_f): the refit repairs the quantization error of
the layers below. Summed input over the T steps is linear in the readout weights
(sum_t W x[t] = W . counts), so the fit is exact least squares with an L1 penalty:

    min_W  1/(2N) ||counts_int W^T - counts_f W_f^T||^2 + alpha ||W||_1

solved by coordinate descent (scikit-learn Lasso). The refit float weights are then
re-quantized by the same calibration as every other layer.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..emulator import run
from ..ir import DeployGraph


def refit_readout(folded: DeployGraph, quantized: DeployGraph, x: np.ndarray,
                  alpha: float = 1e-4) -> DeployGraph:
    """Folded float graph whose readout weights are refit on the integer hidden spikes."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    if len(folded.layers) < 2:
        raise ValueError("refit needs a hidden layer below the readout")
    hid_int = run(quantized.with_(layers=quantized.layers[:-1]), x, integer=True)[-1]
    hid_f = run(folded.with_(layers=folded.layers[:-1]), x, integer=False)[-1]
    phi = hid_int.sum(axis=1).astype(np.float64)                 # (N, H) integer patterns
    readout = folded.layers[-1]
    drive = hid_f.sum(axis=1).astype(np.float64) @ readout.weight.T   # (N, C) float target
    fit = Lasso(alpha=alpha, fit_intercept=False, max_iter=5000, tol=1e-6, selection="cyclic")
    with warnings.catch_warnings():
        # an unconverged fit is still a valid candidate: export keeps it only if it helps
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit.fit(phi, drive)
    w = np.asarray(fit.coef_, dtype=np.float64).reshape(readout.weight.shape)
    return folded.with_(layers=folded.layers[:-1] + (readout.with_(weight=w),))
