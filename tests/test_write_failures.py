"""A write that fails (a full disk, a read-only file system, a file size limit) ends every
command that writes with one line naming the cause and the path, exit 1, no traceback
(h5py on a full disk used to crash the export: exit 139), no temporary file or folder
left, and the previous output byte for byte as it was (issue 30, item 7).

Each case runs the installed CLI in a subprocess over a directory DIR holding the
previous output. "full": DIR is a small tmpfs filled to the last byte (root only: mount);
"read-only": DIR remounted read-only (root), or made unwritable with chmod (other users,
for whom chmod is enforced); "fsize": RLIMIT_FSIZE 0 with SIGXFSZ ignored, so every
write(2) fails with EFBIG (anyone).
"""
import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ahsar_deploy import api, report, sweep

ROOT = os.geteuid() == 0
FILLER = "filler"   # fills the tmpfs; not part of the snapshot
CAUSE = {"full": "no space left on device (ENOSPC)",
         "read-only": "read-only file system (EROFS)" if ROOT else "permission denied (EACCES)",
         "fsize": "file too large"}
SWEEP = '[sweep]\ndata = "digits"\nepochs = 1\ntrain-samples = 120\nhidden = [8]\nsteps = 4\nseeds = [0]\n'


@pytest.fixture(scope="module")
def used(small_model, small_build, tmp_path_factory):
    """Every command's previous output: the small build after `run`, `energy` and `report`
    (run-emulator.json, spikes-emulator.npz, energy.json/.md/.png, report.html), the
    model, a finished one-trial sweep and its config."""
    base = tmp_path_factory.mktemp("used")
    b = base / "b"
    shutil.copytree(small_build, b)
    api.run(b, samples=8)
    api.energy(b, samples=8)
    report.write(b)
    shutil.copy(small_model, base / "m.pt")
    (base / "sweep.toml").write_text(SWEEP)
    sweep.sweep(base / "sweep.toml", base / "s", serial=True, progress=False)
    return base


# command -> (what DIR holds before: names in `used`, arguments (DIR for {d}), the output named)
COMMANDS = {
    "export": ((), ["export", "{model}", "-o", "{d}/b", "--calib-samples", "16", "-q"], "{d}/b"),
    "export --force": (("b",), ["export", "{model}", "-o", "{d}/b", "--calib-samples", "16", "--force", "-q"],
                       "{d}/b"),
    "run": (("b",), ["run", "{d}/b", "--samples", "12", "-q"], "{d}/b/"),
    "energy": (("b",), ["energy", "{d}/b", "--samples", "12", "-q"], "{d}/b/"),
    "report": (("b",), ["report", "{d}/b", "-q"], "{d}/b/report.html"),
    "train": (("m.pt",), ["train", "--data", "digits", "--hidden", "8", "--steps", "4", "--epochs", "1",
                          "--train-samples", "120", "-o", "{d}/m.pt", "-q"], "{d}/m.pt"),
    "sweep": (("s", "sweep.toml"), ["sweep", "{d}/sweep.toml", "-o", "{d}/s", "--serial", "-q"], "{d}/s/sweep."),
}


def _snapshot(d: Path) -> dict:
    """Every file and folder under d, hidden ones included: relative path -> bytes (None for a folder)."""
    return {str(p.relative_to(d)): None if p.is_dir() else p.read_bytes()
            for p in sorted(d.rglob("*")) if p.name != FILLER}


def _fill(d: Path) -> None:
    """Write FILLER until the file system has not one byte left."""
    fd = os.open(d / FILLER, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)


def _mount(d: Path, opts: str) -> None:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


@pytest.fixture
def place(tmp_path):
    """place(cause) -> (DIR, preexec_fn for the subprocess); undone after the test."""
    undo = []

    def make(cause: str):
        d = tmp_path / "d"
        d.mkdir()
        if cause == "fsize":
            return d, lambda: (signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
                               resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY)))
        if ROOT:
            _mount(d, "size=4m")
            undo.append(lambda: subprocess.run(["umount", "-l", str(d)], check=True))
        elif cause == "full":
            pytest.skip("a full disk needs a tmpfs (root); fsize covers the same paths")
        return d, None
    yield make
    for u in undo:
        u()


def _seal(d: Path, cause: str) -> None:
    """Make DIR full or read-only once the previous output is in it."""
    if cause == "full":
        _fill(d)
    elif cause == "read-only" and ROOT:
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
    elif cause == "read-only":
        for p in [d, *d.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)


@pytest.mark.parametrize("cause", ["full", "read-only", "fsize"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_failed_write_is_one_line_and_leaves_everything_as_it_was(command, cause, used, small_model, place):
    before_names, args, named = COMMANDS[command]
    d, preexec = place(cause)
    for name in before_names:
        (shutil.copytree if (used / name).is_dir() else shutil.copy)(used / name, d / name)
    before = _snapshot(d)
    assert len(before) >= len(before_names)
    _seal(d, cause)
    subs = {"model": small_model, "d": d}
    try:
        r = subprocess.run([sys.executable, "-m", "ahsar_deploy.cli", *(a.format(**subs) for a in args)],
                           capture_output=True, text=True, timeout=300, preexec_fn=preexec, check=False)
    finally:
        if cause == "read-only" and not ROOT:
            for p in [d, *d.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o755)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-3000:]
    errors = [l for l in r.stderr.splitlines() if ": error: " in l]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    assert f"cannot write {named.format(**subs)}" in line, line
    assert CAUSE[cause] in line, line
    assert ".tmp-" not in line, line   # the output the user named, not a temporary file
    if cause == "full":
        (d / FILLER).unlink()
    assert _snapshot(d) == before   # nothing left behind, nothing changed
