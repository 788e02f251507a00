"""Offline datasets (IDX reader, missing-dataset errors) and the input encodings."""
import gzip

import numpy as np
import pytest

from ahsar_deploy import data
from ahsar_deploy.errors import DatasetError


def _write_idx(path, arr, gz=False):
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_read_back_exactly(tmp_path, monkeypatch, gz):
    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, (6000, 28, 28))
    te = rng.integers(0, 256, (7, 28, 28))
    ytr, yte = rng.integers(0, 10, 6000), rng.integers(0, 10, 7)
    for name, arr in [("train-images-idx3-ubyte", tr), ("t10k-images-idx3-ubyte", te),
                      ("train-labels-idx1-ubyte", ytr), ("t10k-labels-idx1-ubyte", yte)]:
        _write_idx(tmp_path / name, arr, gz)
    monkeypatch.setattr(data, "FMNIST_DIR", tmp_path)
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    ds = data.load("fmnist")
    assert ds.shape == (1, 28, 28) and ds.n_features == 784
    assert (len(ds.train.y), len(ds.val.y), len(ds.test.y)) == (1000, 5000, 7)
    np.testing.assert_array_equal(ds.test.x * 255, te.reshape(7, 784))
    np.testing.assert_array_equal(ds.test.y, yte)
    # train + val are a permutation of the 6000 training images
    both = np.concatenate([ds.train.y, ds.val.y])
    np.testing.assert_array_equal(np.bincount(both, minlength=10), np.bincount(ytr, minlength=10))


def test_image_cache_is_memory_mapped_and_follows_its_source(tmp_path, monkeypatch):
    """The parsed images are cached as .npy files and opened memory-mapped; a changed
    source file or a damaged cache is parsed again, never read as it is."""
    rng = np.random.default_rng(1)
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    te = rng.integers(0, 256, (5, 28, 28))
    for name, arr in [("train-images-idx3-ubyte", rng.integers(0, 256, (5003, 28, 28))),
                      ("t10k-images-idx3-ubyte", te), ("train-labels-idx1-ubyte", rng.integers(0, 10, 5003)),
                      ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 5))]:
        _write_idx(src / name, arr)
    monkeypatch.setattr(data, "FMNIST_DIR", src)
    monkeypatch.setattr(data, "CACHE_DIR", cache)
    first = data.load("fmnist")
    (folder,) = cache.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{p}_{k}.npy" for p in ("train", "val", "test") for k in "xy"] + ["stamp.json"])
    again = data.load("fmnist")
    assert isinstance(again.train.x, np.memmap) and not again.train.x.flags.writeable
    for a, b in [(first.train, again.train), (first.val, again.val), (first.test, again.test)]:
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    te2 = (te + 1) % 256                                     # the source changes: parsed again
    _write_idx(src / "t10k-images-idx3-ubyte", te2)
    np.testing.assert_array_equal(data.load("fmnist").test.x * 255, te2.reshape(5, 784))
    (folder / "test_x.npy").write_bytes(b"damaged")          # a damaged cache: parsed again
    np.testing.assert_array_equal(data.load("fmnist").test.x * 255, te2.reshape(5, 784))


def test_digits_cache_equals_scikit_learn_and_needs_no_import(tmp_path, monkeypatch):
    """digits comes from a memory-mapped cache equal, array for array, to load_digits()
    split by _split; a fresh process reading the cache does not import scikit-learn; a
    damaged cache is built again."""
    import os
    import subprocess
    import sys

    from sklearn.datasets import load_digits
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    d = load_digits()
    want = data._split(d.data.astype(np.float64) / 16.0, d.target.astype(np.int64))
    for ds in (data.load("digits"), data.load("digits")):    # built, then read back
        for got, exp in zip((ds.train, ds.val, ds.test), want):
            np.testing.assert_array_equal(got.x, exp.x)
            np.testing.assert_array_equal(got.y, exp.y)
            assert got.x.dtype == np.float64 and got.y.dtype == np.int64
    assert isinstance(ds.train.x, np.memmap) and ds.shape == (1, 8, 8) and len(ds.test.y) == 360
    (folder,) = (tmp_path / "cache").iterdir()
    (folder / "val_y.npy").write_bytes(b"damaged")
    np.testing.assert_array_equal(data.load("digits").val.y, want[1].y)
    code = ("import sys; from ahsar_deploy import data; ds = data.load('digits'); "
            "print(len(ds.train.y), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "AHSAR_DATA": str(tmp_path)})
    assert out.stdout.split() == ["1257", "False"], out.stderr


def test_missing_and_truncated_datasets_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(data, "FMNIST_DIR", tmp_path)
    with pytest.raises(DatasetError, match="not installed.*apt-get install dataset-fashion-mnist"):
        data.load("fmnist")
    monkeypatch.setattr(data, "MNIST_DIR", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") * 3 + b"\0" * 5)
    with pytest.raises(DatasetError, match="truncated"):
        data.load("mnist")
    with pytest.raises(DatasetError, match="unknown dataset"):
        data.load("cifar")


def test_mnist_installed_by_make():
    ds = data.load("mnist")
    assert (len(ds.train.y), len(ds.val.y), len(ds.test.y)) == (55000, 5000, 10000)
    assert ds.train.x.max() == 1.0 and ds.train.x.min() == 0.0


def test_encodings():
    x = np.array([[0.0, 0.25, 0.5, 1.0]])
    rate = data.encode(x, 8, "rate")
    np.testing.assert_array_equal(rate.sum(axis=1)[0], [0, 2, 4, 8])          # round(p*T) spikes
    np.testing.assert_array_equal(data.encode(x, 1, "rate")[0, 0], [0, 0, 1, 1])   # T=1: p >= 1/2
    lat = data.encode(x, 5, "latency")[0]
    assert lat.sum(axis=0).tolist() == [0, 1, 1, 1]                            # one spike if p > 0
    assert [int(np.argmax(lat[:, f])) for f in (1, 2, 3)] == [3, 2, 0]         # round((1-p)(T-1))
    p1, p2 = data.encode(np.full((2000, 3), 0.3), 20, "poisson", seed=5), data.encode(np.full((2000, 3), 0.3), 20, "poisson", seed=5)
    assert np.array_equal(p1, p2) and abs(p1.mean() - 0.3) < 0.01               # seeded Bernoulli(p)
    d = data.encode(x, 3, "direct")
    assert d.dtype == np.float32 and np.array_equal(d[0, 2], x[0].astype(np.float32))
    with pytest.raises(DatasetError, match="unknown encoding"):
        data.encode(x, 3, "phase")


def test_shift_translates_each_image_within_bounds():
    """Shift augmentation moves each image by a whole number of pixels in
    [-m, m] per axis: a single bright pixel lands at most m away, nothing else changes."""
    rng = np.random.default_rng(0)
    x = np.zeros((200, 1 * 9 * 9), dtype=np.float32)
    x[:, 4 * 9 + 4] = 1.0                       # centre pixel of a 9x9 image
    out = data.shift(x, (1, 9, 9), 2, rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.all(out.sum(1) == 1.0)            # the pixel never falls off a 9x9 image
    r, c = np.divmod(out.argmax(1), 9)
    assert np.all(np.abs(r - 4) <= 2) and np.all(np.abs(c - 4) <= 2)
    assert len(set(zip(r, c))) == 25            # all 25 offsets drawn over 200 samples
    edge = np.zeros((1, 81), dtype=np.float32)
    edge[0, 0] = 1.0                            # a corner pixel shifted out is dropped (zero fill)
    assert {float(data.shift(edge, (1, 9, 9), 1, np.random.default_rng(s)).sum())
            for s in range(30)} == {0.0, 1.0}
    assert data.shift(x, (1, 9, 9), 0, rng) is x
    with pytest.raises(DatasetError, match="image"):
        data.shift(x, (), 1, rng)


@pytest.mark.parametrize("name, images, rows", [("sdigits", "digits", 8), ("smnist", "mnist", 28)])
def test_sequential_datasets_feed_binary_rows_in_order(name, images, rows):
    """sdigits / smnist: each image fed row by row (row t at step t, top first), one input
    per column, a spike where the intensity > 1/2; splits and labels as the images'."""
    seq, img = data.load(name), data.load(images)
    assert (seq.steps, seq.n_features, seq.shape, seq.n_classes) == (rows, rows, (), 10)
    for s, i in ((seq.train, img.train), (seq.val, img.val), (seq.test, img.test)):
        assert s.x.shape == (len(i.y), rows, rows) and s.x.dtype == np.uint8
        np.testing.assert_array_equal(s.y, i.y)
    x, pix = seq.test.x[:50], img.test.x[:50].reshape(-1, rows, rows)
    assert set(np.unique(x)) == {0, 1}
    np.testing.assert_array_equal(x, pix > 0.5)                   # x[n, t, c] = pixel (row t, column c)
    assert 0 < x.mean() < 0.5
    np.testing.assert_array_equal(data.encode(seq.test.x[:5], rows, "latency"), seq.test.x[:5])   # as spike data
    with pytest.raises(DatasetError, match="model runs 2"):
        data.encode(seq.test.x[:5], 2)
