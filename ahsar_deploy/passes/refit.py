"""Convex readout refit after quantization (METHODS.md 4; issue 5, optional).

Udupi et al., arXiv 2605.08022, after Ergen et al., ICLR 2023 (pilancilab/Threshold-
networks): with the hidden spike patterns fixed, fitting the readout weights is a convex
(LASSO) problem. Here the patterns are the ones the integer network itself produces on
calibration data, and the regression target is the folded float network's readout drive
(its summed synaptic input, W_f . counts_f): the refit repairs the quantization error of
the layers below. Summed input over the T steps is linear in the readout weights
(sum_t W x[t] = W . counts), so the fit is exact least squares with an L1 penalty:

    min_W  1/(2N) ||counts_int W^T - counts_f W_f^T||^2 + alpha ||W||_1

solved by FISTA (Beck & Teboulle, SIAM J. Imaging Sci. 2009) on the Gram matrix, warm
started from the ridge solution: a few hundred small matrix products, so it costs
milliseconds. The refit float weights are then re-quantized by the same calibration
as every other layer. A recurrent readout is not refit (its summed input also depends on
its own spikes, so the fit is not linear in its weights): refit_readout refuses it and
build.py skips the refit with a one-line note. Recurrent hidden layers are fine.
"""
from __future__ import annotations


import numpy as np
from threadpoolctl import threadpool_limits

from .. import interrupts
from ..emulator import run
from ..ir import DeployGraph


def _largest_eigenvalue(g: np.ndarray) -> float:
    """Largest eigenvalue of the symmetric PSD g (H, H): Lanczos (scipy's ARPACK eigsh, to
    machine precision) for H >= 16; a full eigvalsh below that, for g = 0 and where ARPACK
    fails. Same value as eigvalsh to about 1e-15 relative, in ~10 ms instead of 0.4 s for H = 1000 (3 s when other jobs load the
    cores and LAPACK's threads wait on them)."""
    if len(g) < 16 or not np.any(g):   # small, or all zero (a silent layer below the readout)
        return float(np.linalg.eigvalsh(g)[-1])
    from scipy.sparse.linalg import ArpackError, eigsh
    try:
        return float(eigsh(g, k=1, which="LA", return_eigenvectors=False, tol=0, v0=np.ones(len(g)))[0])
    except ArpackError:   # e.g. g @ ones = 0 for a g that is not zero: the full solver
        return float(np.linalg.eigvalsh(g)[-1])


def lasso_fista(phi: np.ndarray, target: np.ndarray, alpha: float, iterations: int = 300) -> np.ndarray:
    """argmin_W 1/(2N) ||phi W - target||^2 + alpha ||W||_1 for W of shape (H, C)."""
    n, h = phi.shape
    g = phi.T @ phi / n
    b = phi.T @ target / n
    lip = _largest_eigenvalue(g) if h else 0.0
    if lip <= 0:
        return np.zeros((h, target.shape[1]))
    # The iterates are kept transposed, (C, H): g is symmetric, so g @ y = (y.T @ g).T, and
    # the (C, H) @ (H, H) product streams g once in the order it is stored (1.1 ms, not 1.7,
    # H = 1000). With C ~ 10 it is memory-bound: one BLAS thread is as fast on an idle
    # machine and 3x faster when other jobs hold the cores (threads wait on each other)
    with threadpool_limits(1):
        w = np.linalg.solve(g + 1e-9 * lip * np.eye(h), b).T        # ridge warm start
        y, t, bt = w.copy(), 1.0, np.ascontiguousarray(b.T)
        for _ in range(iterations):
            interrupts.check()
            z = y - (y @ g - bt) / lip
            w_new = np.sign(z) * np.maximum(np.abs(z) - alpha / lip, 0.0)
            t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
            y = w_new + (t - 1) / t_new * (w_new - w)
            w, t = w_new, t_new
    return w.T


def refit_readout(folded: DeployGraph, quantized: DeployGraph, x: np.ndarray,
                  alpha: float = 1e-4, iterations: int = 300) -> DeployGraph:
    """Folded float graph whose readout weights are refit on the integer hidden spikes."""
    if len(folded.layers) < 2:
        raise ValueError("refit needs a hidden layer below the readout")
    if folded.layers[-1].recurrent is not None:
        raise ValueError("refit: a recurrent readout is not refit (not linear in its weights)")
    hid_int = run(quantized.with_(layers=quantized.layers[:-1]), x, integer=True)[-1]
    hid_f = run(folded.with_(layers=folded.layers[:-1]), x, integer=False)[-1]
    phi = hid_int.sum(axis=1).astype(np.float64)                 # (N, H) integer patterns
    readout = folded.layers[-1]
    drive = hid_f.sum(axis=1).astype(np.float64) @ readout.weight.T   # (N, C) float target
    w = lasso_fista(phi, drive, alpha, iterations).T
    return folded.with_(layers=folded.layers[:-1] + (readout.with_(weight=w),))
