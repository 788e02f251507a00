"""Calibration picks an integer grid the chip can hold, trying every candidate scale."""
import numpy as np
import pytest

from ahsar_deploy.errors import TargetError
from ahsar_deploy.ir import DeployGraph, Layer
from ahsar_deploy.passes.calibrate import calibrate
from hw_targets import LOIHI


def _graph(weight, threshold=1.0):
    n_out, n_in = weight.shape
    layer = Layer(name="layer0", weight=weight, threshold=np.full(n_out, threshold), i_decay=4096, v_decay=0)
    return DeployGraph(layers=(layer,), n_inputs=n_in, steps=6, dataset="random", encoding="random",
                       method="baseline", source_sha256="", target="")


def test_one_outlier_weight_is_clipped_instead_of_refusing_the_layer():
    """Scaling the outlier 1000 to the top of the grid (k = 254 / 1000) rounds the threshold
    to 0; the 99.5 % quantile candidate clips that one weight and fits."""
    rng = np.random.default_rng(0)
    w = rng.uniform(0.01, 0.02, size=(10, 64))
    w[3, 5] = 1000.0
    x = (rng.random((32, 6, 64)) < 0.5).astype(np.uint8)
    q, (rep,) = calibrate(_graph(w), x, LOIHI)
    assert rep.quantile is not None and rep.quantile < 1.0
    assert rep.weights_clipped >= 1 and q.layers[0].weight[3, 5] == LOIHI.weight_max
    assert 1 <= rep.vth == q.layers[0].vth


def test_no_candidate_fits_is_one_error_naming_the_layer():
    w = np.full((4, 8), 1.0)
    with pytest.raises(TargetError, match=r"layer0 threshold mantissa 0 .* for every candidate scale"):
        calibrate(_graph(w, threshold=1e-6), np.ones((2, 6, 8), dtype=np.uint8), LOIHI)
