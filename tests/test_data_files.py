"""Bring your own data (issue 16): .npz data files for train / export / run / energy,
event streams binned with tonic, NIR graphs calibrated from a file alone."""
import json

import nir
import numpy as np
import pytest

from ahsar_deploy import data, emulator
from ahsar_deploy.build import load
from ahsar_deploy.errors import DatasetError

EVENT_DTYPE = [("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")]


def _nmnist_cnn(rng):
    """N-MNIST-shaped CNN as NIR: input 2x34x34 -> Conv2d(2->4, 3x3, stride 2, padding 1)
    -> IF -> SumPool2d(2) -> Flatten -> Linear(256 -> 10) -> IF."""
    w1 = rng.normal(0, 0.6, (4, 2, 3, 3))
    w2 = rng.normal(0, 0.3, (10, 4 * 8 * 8))
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([2, 34, 34])),
        "conv": nir.Conv2d(input_shape=(34, 34), weight=w1, stride=2, padding=1, dilation=1, groups=1,
                           bias=np.zeros(4)),
        "spk1": nir.IF(r=np.ones((4, 17, 17)), v_threshold=np.ones((4, 17, 17))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=w2),
        "spk2": nir.IF(r=np.ones(10), v_threshold=np.ones(10)),
        "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "conv"), ("conv", "spk1"), ("spk1", "pool"), ("pool", "flat"), ("flat", "fc"),
               ("fc", "spk2"), ("spk2", "output")], type_check=False)


def _events(rng, n, t_max_us=30000, per_sample=300):
    """n random N-MNIST-like samples: events on a 34x34 sensor, 2 polarities."""
    ev = np.zeros(n * per_sample, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, 34, (2, len(ev)))
    ev["p"] = rng.integers(0, 2, len(ev))
    ev["t"] = np.sort(rng.integers(0, t_max_us, (n, per_sample)), axis=1).reshape(-1)
    return ev, np.arange(n + 1) * per_sample


def test_events_bin_to_the_stated_frames():
    """Sample 0: events at 0, 100, 999 us (bin 0), 1500 (bin 1), 2999 (bin 2) after the
    first at 10 us; sample 1: one event. Frames (N, T, P, H, W): pixel (y, x) of polarity p."""
    ev = np.zeros(6, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = [0, 1, 2, 3, 33, 5], [0, 0, 1, 2, 33, 5]
    ev["t"], ev["p"] = [10, 110, 1009, 1510, 3009, 500], [0, 1, 1, 0, 1, 1]
    f = data.bin_events(ev, np.array([0, 5, 6]), (34, 34, 2), bin_us=1000)
    assert f.shape == (2, 3, 2, 34, 34) and f.dtype == bool
    assert [tuple(i) for i in np.argwhere(f[0])] == [(0, 0, 0, 0), (0, 1, 0, 1), (0, 1, 1, 2),
                                                     (1, 0, 2, 3), (2, 1, 33, 33)]
    assert [tuple(i) for i in np.argwhere(f[1])] == [(0, 1, 5, 5)]
    # --steps alone: the sample's span in equal windows, its last event kept (3000 us / 4 = 750)
    f = data.bin_events(ev, np.array([0, 5, 6]), (34, 34, 2), steps=4)
    assert f[0].sum(axis=(1, 2, 3)).tolist() == [2, 1, 1, 1] and f[1].sum() == 1
    # both: the first 2 windows of 1000 us
    assert data.bin_events(ev, np.array([0, 5, 6]), (34, 34, 2), steps=2, bin_us=1000)[0].sum() == 4
    for bad, why in [(dict(sensor_size=(33, 34, 2)), "outside the sensor size"),
                     (dict(offsets=np.array([0, 7])), "offsets must be"),
                     (dict(events=ev[["x", "y", "t"]]), "fields x, y, t, p")]:
        args = dict(events=ev, offsets=np.array([0, 5, 6]), sensor_size=(34, 34, 2), bin_us=1000) | bad
        with pytest.raises(DatasetError, match=why):
            data.bin_events(**args)


def test_events_command_writes_a_spike_file(tmp_path, cli_inproc):
    rng = np.random.default_rng(0)
    ev, off = _events(rng, 6)
    np.savez(tmp_path / "ev.npz", events_train=ev[:off[4]], offsets_train=off[:5], y_train=np.arange(4) % 2,
             events_test=ev[off[4]:], offsets_test=off[:3], y_test=np.array([1, 0]))
    code, _, err = cli_inproc("events", tmp_path / "ev.npz", "--sensor-size", "34,34,2", "--bin-us", "3000",
                              "--steps", "10", "-o", tmp_path / "frames.npz")
    assert code == 0, err
    ds = data.load(str(tmp_path / "frames.npz"))
    assert ds.steps == 10 and ds.shape == (2, 34, 34) and ds.n_features == 2 * 34 * 34
    assert ds.train.x.shape == (4, 10, 2 * 34 * 34) and ds.test.y.tolist() == [1, 0]
    want = data.bin_events(ev[off[4]:], off[:3], (34, 34, 2), steps=10, bin_us=3000)
    np.testing.assert_array_equal(np.asarray(ds.test.x), want.reshape(2, 10, -1))
    code, _, err = cli_inproc("events", tmp_path / "ev.npz", "--sensor-size", "34,34", "--steps", "4",
                              "-o", tmp_path / "f2.npz")
    assert code == 1 and "--sensor-size" in err and not (tmp_path / "f2.npz").exists(), err


def test_nmnist_shaped_cnn_deploys_runs_and_prices_from_a_spike_file(tmp_path, cli_inproc):
    """A N-MNIST-shaped conv graph written with `nir` deploys from a spikes file with no
    dataset name and no --steps; run and energy take the same file; the build's spikes
    equal the emulator run on the file's own frames."""
    rng = np.random.default_rng(1)
    nir.write(str(tmp_path / "cnn.nir"), _nmnist_cnn(rng))
    ev, off = _events(rng, 40)
    x = data.bin_events(ev, off, (34, 34, 2), steps=12)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "nmnist.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    code, _, err = cli_inproc("export", tmp_path / "cnn.nir", "--data", tmp_path / "nmnist.npz",
                              "-o", tmp_path / "b", "-q")
    assert code == 0, err
    graph, m = load(tmp_path / "b")
    assert graph.steps == 12 and graph.n_inputs == 2 * 34 * 34 and m["dataset"] == str(tmp_path / "nmnist.npz")
    code, stdout, err = cli_inproc("run", tmp_path / "b", "--backend", "emulator", "--json", "-q")
    assert code == 0, err
    r = json.loads(stdout)
    want = emulator.run(graph, x[30:].reshape(10, 12, -1).astype(np.uint8))[-1].sum(axis=1).argmax(axis=1)
    assert r["samples"] == 10 and r["predictions"] == want.tolist()
    code, stdout, err = cli_inproc("energy", tmp_path / "b", "--backend", "emulator", "--data",
                                   tmp_path / "nmnist.npz", "--json", "-q")
    assert code == 0 and json.loads(stdout)["total_j_per_inference"] > 0, err
    assert "spikes of 10 samples: 10 from spikes-emulator.npz, 0 run on emulator" in err
    w = rng.normal(0, 0.05, (10, 2 * 34 * 34))     # and a dense graph on the same file
    nir.write(str(tmp_path / "dense.nir"), nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([2 * 34 * 34])), "fc": nir.Linear(weight=w),
        "spk": nir.IF(r=np.ones(10), v_threshold=np.ones(10)), "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "fc"), ("fc", "spk"), ("spk", "output")]))
    code, _, err = cli_inproc("export", tmp_path / "dense.nir", "--data", tmp_path / "nmnist.npz",
                              "-o", tmp_path / "d", "-q")
    assert code == 0, err
    code, stdout, err = cli_inproc("energy", tmp_path / "d", "--backend", "emulator", "--data",
                                   tmp_path / "nmnist.npz", "--json", "-q")
    assert code == 0 and json.loads(stdout)["total_j_per_inference"] > 0, err


def test_nir_graph_calibrates_from_a_calibration_file_alone(tmp_path, cli_inproc):
    """No --data, no --steps: the (N, T, F) spikes of --calib set both; with no labels the
    export reports agreement only, and run asks for data."""
    rng = np.random.default_rng(2)
    nir.write(str(tmp_path / "cnn.nir"), _nmnist_cnn(rng))
    ev, off = _events(rng, 16)
    np.save(tmp_path / "cal.npy", data.bin_events(ev, off, (34, 34, 2), steps=8).reshape(16, 8, -1))
    code, _, err = cli_inproc("export", tmp_path / "cnn.nir", "--calib", tmp_path / "cal.npy",
                              "-o", tmp_path / "b", "-q")
    assert code == 0, err
    assert "no labelled data" in err and "on the 16 calibration samples" in err
    c = json.loads((tmp_path / "b" / "calibration.json").read_text())
    assert c["validation_accuracy"]["float"] is None and c["validation_samples"] is None
    code, _, err = cli_inproc("run", tmp_path / "b", "--backend", "emulator")
    assert code == 1 and "pass --data" in err, err
    code, _, err = cli_inproc("export", tmp_path / "cnn.nir", "--calib", tmp_path / "cal.npy", "--encoding",
                              "latency", "-o", tmp_path / "c")
    assert code == 1 and "the data are spikes already" in err and not (tmp_path / "c").exists(), err


def test_training_on_a_file_matches_the_built_in_dataset(tmp_path):
    """The same digits split written to an .npz trains to the same checkpoint accuracy."""
    from ahsar_deploy.train import train
    ds = data.load("digits")
    np.savez(tmp_path / "d.npz", x_train=ds.train.x, y_train=ds.train.y, x_val=ds.val.x, y_val=ds.val.y,
             x_test=ds.test.x, y_test=ds.test.y)
    a = train(data="digits", hidden=(16,), steps=4, epochs=1, progress=False)
    b = train(data=str(tmp_path / "d.npz"), hidden=(16,), steps=4, epochs=1, progress=False)
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_rates"] == b["test_rates"]


def test_uncompressed_members_are_memory_mapped(tmp_path):
    x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(50) % 3)
    np.savez_compressed(tmp_path / "b.npz", x=x, y=np.arange(50) % 3)
    a, b = data.load(str(tmp_path / "a.npz")), data.load(str(tmp_path / "b.npz"))
    assert isinstance(a.test.x, np.memmap) and not isinstance(b.test.x, np.memmap)
    np.testing.assert_array_equal(np.asarray(a.test.x), x)
    np.testing.assert_array_equal(b.test.x, x)
    assert a.n_classes == 3 and a.train is a.test        # x, y: one set for every use


@pytest.mark.parametrize("arrays,why", [
    (dict(images=np.zeros((4, 64)), labels=np.zeros(4, int)), "expected x and y, or x_train"),
    (dict(x=np.zeros(4), y=np.zeros(4, int)), "'x': shape (4,)"),
    (dict(x=np.zeros((4, 64), complex), y=np.zeros(4, int)), "'x': dtype complex128"),
    (dict(x=np.full((4, 64), np.nan), y=np.zeros(4, int)), "'x': intensities must be finite and in [0, 1]"),
    (dict(x=np.full((4, 64), 2.0), y=np.zeros(4, int)), "'x': intensities must be finite"),
    (dict(x=np.full((4, 64), 255, np.uint8), y=np.zeros(4, int)), "'x': integer array of shape (4, 64)"),
    (dict(x=np.full((4, 3, 64), 2, np.uint8), y=np.zeros(4, int)), "'x': integer spikes must be 0 or 1"),
    (dict(x=np.zeros((4, 64)), y=np.zeros(4)), "'y': dtype float64"),
    (dict(x=np.zeros((4, 64)), y=np.zeros(3, int)), "'y': dtype int64, shape (3,)"),
    (dict(x=np.zeros((4, 64)), y=np.array([0, 1, -1, 0])), "'y': label -1 < 0"),
    (dict(x=np.zeros((4, 64)), y=np.zeros(4, int)), "one class only"),
    (dict(x_train=np.zeros((4, 64)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 64)),
          y_test=np.array([0, 5])), "'y_test' has label 5, but the training labels are 0..1"),
    (dict(x_train=np.zeros((4, 64)), y_train=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 63)),
          y_test=np.array([0, 1])), "the splits differ"),
    (dict(x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, int)), "Python objects (pickled)"),
])
def test_malformed_data_files_are_refused_in_one_line(tmp_path, cli_inproc, arrays, why):
    np.savez(tmp_path / "bad.npz", **arrays)
    code, _, err = cli_inproc("train", "--data", tmp_path / "bad.npz", "--epochs", "1", "-o", tmp_path / "m.pt")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and why in lines[0] and "bad.npz" in lines[0], err
    assert not (tmp_path / "m.pt").exists()


def test_not_an_npz_and_missing_file(tmp_path, cli_inproc):
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    for path, why in [(tmp_path / "junk.npz", "not an .npz archive"), (tmp_path / "none.npz", "no such data file")]:
        code, _, err = cli_inproc("train", "--data", path, "-o", tmp_path / "m.pt")
        assert code == 1 and why in err and len(err.strip().splitlines()) == 1, err
