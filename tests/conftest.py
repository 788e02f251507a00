"""Shared fixtures. The float kernels are pinned (ahsar_deploy/kernels.py) before torch or
numpy loads, as the CLI pins them, so every figure a test computes in-process is the one
any x86-64 CPU computes; AHSAR_KERNELS=native runs the suite on the libraries' own
kernels (figures tied to the pinned path then check their tolerance instead)."""
from ahsar_deploy import kernels

kernels.pin()

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ahsar_deploy import checkpoint  # noqa: E402
from ahsar_deploy.train import train  # noqa: E402


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


def _reseal(build_dir):
    """Record the current sha256 of a build's files in its manifest.json, as the export does
    (build._write_manifest): for a test that edits a build on purpose to test something else.
    A listed file that is gone is dropped from the manifest's lists."""
    import json
    from pathlib import Path

    from ahsar_deploy import build
    b = Path(build_dir)
    m = json.loads((b / build.MANIFEST).read_text())
    m["files"] = [n for n in m["files"] if (b / n).is_file()]
    m["file_sha256"] = {n: checkpoint.sha256(b / n) for n in m["file_sha256"] if (b / n).is_file()}
    m["manifest_sha256"] = build._manifest_digest(m)
    (b / build.MANIFEST).write_text(json.dumps(m, indent=2) + "\n")


@pytest.fixture
def reseal():
    """reseal(build_dir): the build's edited files recorded as its own (see _reseal)."""
    return _reseal


@pytest.fixture
def installed():
    """The CLI's signal handling (interrupts.install) for the test, undone after it."""
    from ahsar_deploy import interrupts
    interrupts.install()
    try:
        yield
    finally:
        interrupts.closing()
        interrupts.uninstall()


@pytest.fixture
def cli():
    """Run the CLI as a user would: cli(*args) -> CompletedProcess."""
    return _cli


@pytest.fixture
def cli_inproc(capsys, caplog):
    """The CLI in this process (no interpreter and torch start-up per call):
    cli_inproc(*args) -> (exit code, stdout, stderr with the log lines the CLI prints)."""
    import logging

    from ahsar_deploy import cli as cli_module

    def run(*args):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            code = cli_module.main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err + "".join(r.getMessage() + "\n" for r in caplog.records)
    return run


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


def _int_conv(rng, name, in_shape, c_out, kernel, stride=(1, 1), padding=(0, 0)):
    from ahsar_deploy.ir import Layer
    w = 2 * rng.integers(-40, 60, size=(c_out, in_shape[0], *kernel))
    return Layer(name=name, weight=w, threshold=np.ones(c_out), i_decay=1024, v_decay=512,
                 kind="conv", in_shape=in_shape, stride=stride, padding=padding,
                 vth=int(rng.integers(50, 400)))


@pytest.fixture
def conv_graph():
    """input (2, 7, 5) -> conv 3x3 pad 1 (3 ch) -> conv 3x3 stride 2 (4 ch) -> dense 5.
    Non-square maps and several input channels catch any C/H/W transposition."""
    rng = np.random.default_rng(0)
    from ahsar_deploy.ir import DeployGraph, Layer
    c1 = _int_conv(rng, "conv0", (2, 7, 5), 3, (3, 3), padding=(1, 1))
    c2 = _int_conv(rng, "conv1", c1.out_shape, 4, (3, 3), stride=(2, 2))
    d = Layer(name="fc2", weight=2 * rng.integers(-60, 80, size=(5, c2.n_out)), threshold=np.ones(5),
              i_decay=1024, v_decay=512, vth=300)
    return DeployGraph(layers=(c1, c2, d), n_inputs=70, steps=6, dataset="random", encoding="random",
                       method="baseline", source_sha256="", target="loihi")


def _lava_equals_emulator_many(cases, timeout_s=600):
    """cases: (build_dir, graph, x), run in one Lava worker (one start-up for all); every
    layer's spikes must equal the emulator's at every sample and step, in every case.
    Returns the emulator's spikes per case."""
    import numpy as np
    from ahsar_deploy import emulator
    from exporters import lava
    got_all = lava.run_many([(b, x, g.steps) for b, g, x in cases], timeout_s=timeout_s, progress=False)
    out = []
    for k, ((_, graph, x), got) in enumerate(zip(cases, got_all)):
        want = emulator.run(graph, x)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(g, w, err_msg=f"case {k}, layer {i}")
        out.append(want)
    return out


def _lava_equals_emulator(build_dir, graph, x, timeout_s=300):
    """Run inputs x through Lava (build_dir/model.net) and the emulator (graph); every
    layer's spikes must be equal at every sample and step. Returns the emulator's."""
    return _lava_equals_emulator_many([(build_dir, graph, x)], timeout_s)[0]


@pytest.fixture
def lava_equals_emulator():
    """lava_equals_emulator(build_dir, graph, x) -> emulator spikes, asserted equal to Lava's."""
    return _lava_equals_emulator


@pytest.fixture
def lava_equals_emulator_many():
    """lava_equals_emulator_many([(build_dir, graph, x), ...]) -> emulator spikes per case."""
    return _lava_equals_emulator_many


def _error_line(proc) -> str:
    """The CLI's one error line of a failed command (warnings may precede it)."""
    assert proc.returncode == 1, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if ": error: " in l]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def error_line():
    """error_line(completed_process) -> the one ': error: ' line; asserts exit 1 and one such line."""
    return _error_line


@pytest.fixture(scope="session")
def sdigits8(tmp_path_factory):
    """sdigits (8x8 digits fed row by row: 8 inputs, 8 steps) restricted to classes 0..7,
    so a readout fits Xylo's 8 output neurons: the path of an .npz with x_/y_ train, val, test."""
    import numpy as np

    from ahsar_deploy import data
    ds = data.load("sdigits")
    arrays = {}
    for split in ("train", "val", "test"):
        sp = getattr(ds, split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = sp.x[sp.y < 8].astype(np.uint8), sp.y[sp.y < 8]
    path = tmp_path_factory.mktemp("sdigits8") / "sd8.npz"
    np.savez(path, **arrays)
    return path
