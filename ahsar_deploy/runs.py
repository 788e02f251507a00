"""The spikes a build's runs produced, kept in the build: BUILD/spikes-BACKEND.npz.

`ahsar run` and `ahsar energy` add every sample they run to it; `ahsar energy` reuses
the samples it holds and runs only the missing ones; `ahsar report` draws rasters from
it. Each sample is found by a digest of its input spikes (its bytes, shape and dtype),
so a cached sample is reused only for exactly the same input, whatever data set, file,
encoding or sample count it came from; backends reset state per sample, so a sample's
spikes do not depend on which others ran beside it. The file also holds a digest of the
build's network files (manifest.json, model.net, model.nir): a build changed after the run
(re-exported, or a file edited) does not reuse it.

File (numpy .npz, compressed, loaded with allow_pickle=False; untrusted: checked
against the build before use):
- keys:   (M,) |S16, BLAKE2b-128 digest of each sample's input spikes;
- build:  () |S16, BLAKE2b-128 digest of the build's network files;
- layer0 ... layerK: (M, T, ceil(n_l / 8)) uint8, each layer's spikes (M, T, n_l)
  packed along neurons with numpy.packbits (big-endian bit order).
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import interrupts
from .ir import DeployGraph


@dataclass(frozen=True)
class Cache:
    """Cached spikes: keys (M,) |S16 and per-layer spikes (M, T, n_l) bool."""
    keys: np.ndarray
    spikes: list[np.ndarray]
    path: Path


def path(build: str | Path, backend: str) -> Path:
    return Path(build) / f"spikes-{backend}.npz"


NETWORK_FILES = ("manifest.json", "model.net", "model.nir")


def build_key(build: str | Path) -> bytes:
    """BLAKE2b-128 digest of the build's network files (missing ones count as empty)."""
    h = hashlib.blake2b(digest_size=16)
    for name in NETWORK_FILES:
        p = Path(build) / name
        h.update(name.encode() + (p.read_bytes() if p.is_file() else b""))
    return h.digest()


def sample_keys(x: np.ndarray) -> np.ndarray:
    """(N,) |S16 digests of each sample x[i] (its bytes, shape and dtype)."""
    x = np.ascontiguousarray(x)
    tag = f"{x.dtype.str}{x.shape[1:]}".encode()
    return np.array([hashlib.blake2b(tag + s.tobytes(), digest_size=16).digest() for s in x], dtype="S16")


def load(build: str | Path, backend: str, graph: DeployGraph) -> Cache | None:
    """The cache of `backend`, or None if there is none. Raises ValueError naming what does
    not fit the build (a damaged, foreign or older file): callers warn and run again."""
    p = path(build, backend)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as f:
            want_files = {"keys", "build", *(f"layer{i}" for i in range(len(graph.layers)))}
            if set(f.files) != want_files:
                raise ValueError(f"arrays {sorted(f.files)}, expected {sorted(want_files)}")
            if f["build"].dtype != np.dtype("S16") or f["build"].shape != () or f["build"][()] != build_key(build):
                raise ValueError("its spikes are of another version of this build's network files")
            keys = f["keys"]
            if keys.dtype != np.dtype("S16") or keys.ndim != 1:
                raise ValueError(f"keys: {keys.dtype} {keys.shape}, expected (M,) |S16")
            spikes = []
            for i, l in enumerate(graph.layers):
                packed = f[f"layer{i}"]
                want = (len(keys), graph.steps, -(-l.n_out // 8))
                if packed.dtype != np.uint8 or packed.shape != want:
                    raise ValueError(f"layer{i}: {packed.dtype} {packed.shape}, expected uint8 {want}")
                spikes.append(np.unpackbits(packed, axis=-1, count=l.n_out).astype(bool))
    except (OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(" ".join(str(e).split())[:120] or type(e).__name__) from None
    return Cache(keys, spikes, p)


def save(build: str | Path, backend: str, keys: np.ndarray, spikes: list[np.ndarray]) -> Path:
    """Write (atomically) keys (M,) |S16 and per-layer spikes (M, T, n_l) 0/1."""
    p = path(build, backend)
    arrays = {f"layer{i}": np.packbits(np.asarray(s, dtype=bool), axis=-1) for i, s in enumerate(spikes)}
    buf = io.BytesIO()   # in memory first: numpy's zip left open by a failed write complains when freed
    np.savez_compressed(buf, keys=np.asarray(keys, dtype="S16"), build=np.array(build_key(build), dtype="S16"),
                        **arrays)
    with interrupts.atomic_path(p) as tmp:
        tmp.write_bytes(buf.getvalue())
    return p


def merge(cache: Cache | None, keys: np.ndarray, spikes: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The cache's samples plus the given ones not in it: (keys, per-layer spikes)."""
    if cache is None:
        return keys, spikes
    new = ~np.isin(keys, cache.keys)
    return (np.concatenate([cache.keys, keys[new]]),
            [np.concatenate([c, s[new]]) for c, s in zip(cache.spikes, spikes)])


def lookup(cache: Cache | None, keys: np.ndarray) -> np.ndarray:
    """Row of each key in the cache, -1 where it is missing: (N,) int64."""
    if cache is None:
        return np.full(len(keys), -1, dtype=np.int64)
    index = {k: i for i, k in enumerate(cache.keys.tolist())}
    return np.array([index.get(k, -1) for k in keys.tolist()], dtype=np.int64)
