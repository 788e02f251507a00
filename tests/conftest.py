import subprocess
import sys

import pytest

from ahsar_deploy import checkpoint
from ahsar_deploy.train import train


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A small AHSAR model trained briefly on digits (64-32-16-10, 8 steps)."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    ckpt = train(data="digits", method="ahsar", hidden=(32, 16), steps=8, epochs=3, seed=0,
                 progress=False)
    checkpoint.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def small_build(small_model, tmp_path_factory):
    from ahsar_deploy.build import export
    out = tmp_path_factory.mktemp("builds") / "loihi"
    export(small_model, "loihi", out, calib_samples=64, progress=False)
    return out


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ahsar_deploy.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    """Run the CLI as a user would: cli(*args) -> CompletedProcess."""
    return _cli


def make_checkpoint_dict(sizes, steps=4, method="ahsar", i_decay=1024, v_decay=512, seed=0,
                         weight_scale=1.0, encoding="rate"):
    """An untrained checkpoint dict in the format `ahsar train` writes (no training: fast)."""
    from types import SimpleNamespace

    import torch

    from ahsar_deploy.snn import SNN
    torch.manual_seed(seed)
    model = SNN(list(sizes), i_decay=i_decay, v_decay=v_decay, method=method)
    with torch.no_grad():
        for layer in model.layers:
            layer.syn.weight.mul_(weight_scale)
    ds = SimpleNamespace(name="digits", n_features=sizes[0], n_classes=sizes[-1])
    return checkpoint.make_checkpoint(model, ds, steps, seed, [], 0.5, [0.1] * (len(sizes) - 1),
                                      encoding=encoding)


@pytest.fixture(scope="session")
def make_ckpt():
    """make_ckpt(sizes, **kw) -> checkpoint dict (see make_checkpoint_dict)."""
    return make_checkpoint_dict
