"""A failed or interrupted export leaves no partial build, an existing build survives until
the new one is complete, and the same inputs give byte-identical build directories."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ahsar_deploy import build
from ahsar_deploy.errors import WriteError


def _snapshot(d: pathlib.Path) -> dict:
    """Every file of a build directory: name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture
def old_build(small_build, tmp_path):
    """A copy of a complete build in an otherwise empty directory."""
    out = tmp_path / "work" / "b"
    shutil.copytree(small_build, out)
    return out


def test_same_inputs_give_identical_build_directories(small_model, tmp_path):
    """In-process and in a fresh CLI process (other hash seed), a second apart (HDF5 times)."""
    a, b = tmp_path / "a", tmp_path / "b"
    build.export(small_model, "loihi", a, calib_samples=64, progress=False)
    time.sleep(1.1)
    r = subprocess.run([sys.executable, "-m", "ahsar_deploy.cli", "export", str(small_model),
                        "-o", str(b), "--calib-samples", "64", "-q"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert r.returncode == 0, r.stderr
    sa, sb = _snapshot(a), _snapshot(b)
    assert sorted(sa) == ["calibration.json", "calibration.md", "manifest.json", "model.net", "model.nir", "source.npz"]
    assert sorted(sb) == sorted(sa)
    for name in sa:
        assert sa[name] == sb[name], f"{name} differs between two exports"


def test_failure_while_writing_keeps_the_old_build(small_model, old_build, monkeypatch):
    before = _snapshot(old_build)

    def broken(graph, path):
        pathlib.Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(build.lava_exporter, "write_netx", broken)
    with pytest.raises(KeyboardInterrupt):
        build.export(small_model, "loihi", old_build, force=True, calib_samples=16, progress=False)
    assert _snapshot(old_build) == before
    assert os.listdir(old_build.parent) == ["b"]

    def full_disk(graph, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build.lava_exporter, "write_netx", full_disk)
    with pytest.raises(WriteError, match="no space left on device"):
        build.export(small_model, "loihi", old_build, force=True, calib_samples=16, progress=False)
    assert _snapshot(old_build) == before
    assert os.listdir(old_build.parent) == ["b"]


def test_interrupt_between_the_renames_puts_the_old_build_back(small_model, old_build, monkeypatch):
    """Ctrl-C arriving when the old build is moved aside but the new one not yet in place."""
    before = _snapshot(old_build)
    real_rename = pathlib.Path.rename

    def rename(self, target):
        if self.name.startswith(".b.tmp-"):
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        build.export(small_model, "loihi", old_build, force=True, calib_samples=16, progress=False)
    assert _snapshot(old_build) == before
    assert os.listdir(old_build.parent) == ["b"]


def test_signals_wait_for_the_rename(tmp_path):
    """SIGINT during the swap is delivered after it: the new build is whole, the old gone."""
    new, out = tmp_path / ".b.tmp-12345678", tmp_path / "b"
    new.mkdir()
    (new / "x").write_text("new")
    out.mkdir()
    (out / "x").write_text("old")
    real_rename = pathlib.Path.rename
    calls = []

    def rename(self, target):
        calls.append(self.name)
        if len(calls) == 1:
            # arrives between the two renames; raise_signal delivers to this (the main)
            # thread at once: os.kill may pick another thread, late on a loaded machine
            signal.raise_signal(signal.SIGINT)
        return real_rename(self, target)

    pathlib.Path.rename = rename
    # a shell's background job starts with SIGINT ignored (and Python keeps it so):
    # give this test Python's usual Ctrl-C handler whatever the caller's disposition
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            build._replace_dir(new, out)
    finally:
        pathlib.Path.rename = real_rename
        signal.signal(signal.SIGINT, handler)
    assert len(calls) == 2
    assert (out / "x").read_text() == "new"
    assert os.listdir(tmp_path) == ["b"]
