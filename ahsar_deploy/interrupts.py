"""Ctrl-C and SIGTERM: never lost, never a traceback, never a half-written file.

Python's own SIGINT handler raises KeyboardInterrupt at whatever bytecode runs when the
signal lands. When that is a finalizer, a weakref callback or a ``__del__``, Python hands
the exception to ``sys.unraisablehook``, prints "Exception ignored in ..." with a
traceback, and drops it: the command carries on as if nothing had been asked
(https://docs.python.org/3.11/library/sys.html#sys.unraisablehook). When it is Python
code that C++ called (torch's pybind11 bindings, e.g. during ``import torch``), the
exception can reach a ``noexcept`` boundary and the process aborts (seen: exit -6,
"terminate called after throwing an instance of 'pybind11::error_already_set'").

So the CLI's handler (:func:`install`) raises nothing: it records the signal, and the
command stops where it is safe to, at the next :func:`check`. Long loops call it (per
training batch, calibration candidate, emulator chunk and time step, Lava poll), the
CLI calls it after start-up and at the end, and every writer calls it just before it
puts output in place (:func:`atomic_path`, the build's rename), so a signal is never
lost and never half-applied. A second signal is recorded too; the first decides the
exit code: 128 + its number, 130 for SIGINT and 143 for SIGTERM (POSIX shells'
convention).

Without :func:`install` (library use, Python's default handlers) :func:`held` defers
signals over a block that must not be cut (a rename, a cleanup) and then hands them to
the handler that was there before, and :func:`check` does nothing.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by :func:`check` after SIGINT or SIGTERM; ``signum`` is the first signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


_received: list[int] = []   # signals seen since install() (or within a library-mode held())
_installed = False
_closing = False
_before: dict = {}


def _record(signum: int, _frame) -> None:
    _received.append(signum)   # never raises: see the module docstring


def install() -> None:
    """Record SIGINT and SIGTERM instead of raising (a CLI command, main thread only);
    :func:`check` turns them into :class:`Interrupted`. :func:`uninstall` undoes it."""
    global _installed, _closing
    _received.clear()
    _closing = False
    _before.update({s: signal.signal(s, _record) for s in SIGNALS})
    _installed = True


def closing() -> None:
    """The command's work is over: from now on SIGINT and SIGTERM are ignored, so none lands
    in the interpreter's shutdown (CPython's _PySignal_Fini puts back SIG_DFL for a Python
    handler early in it, but keeps SIG_IGN)."""
    global _closing
    _closing = True
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def uninstall() -> None:
    """Restore the handlers :func:`install` replaced."""
    global _installed
    for s in SIGNALS:
        if s in _before:
            signal.signal(s, _before.pop(s))
    _installed = False


def received() -> int | None:
    """The first signal recorded since :func:`install`, or None."""
    return _received[0] if _received and _installed else None


def check() -> None:
    """Raise :class:`Interrupted` if SIGINT or SIGTERM came since :func:`install` (and the
    command is not already closing). Costs a list lookup: call it as often as you like."""
    if _installed and _received and not _closing:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Library use: defer SIGINT and SIGTERM until the block ends, then hand the first to
    the handler that was installed before (Python's raises KeyboardInterrupt). Under
    :func:`install` signals never interrupt a block anyway, and this does nothing. Python
    runs signal handlers in the main thread only; in other threads nothing is held."""
    if _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    start = len(_received)
    before = {s: signal.signal(s, _record) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        got = _received[start:]
        del _received[start:]
        if got:
            signal.raise_signal(got[0])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file beside `path` (same suffix, so writers that infer the format
    from it work); rename it to `path` when the block completes, delete it otherwise.

    A reader sees the old file or the complete new one, never a partial one; a signal
    recorded before the rename (:func:`check`) drops the new file. Raises
    errors.WriteError naming `path` and the cause (no space left, read-only, permission)
    for an OSError while writing (the parent is created first). atomic_paths for several."""
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """atomic_path for files written together (e.g. energy.json, .md and .png): one
    temporary file beside each, all renamed into place only once the block completes,
    all deleted otherwise, so a failure leaves every previous file as it was. Raises
    errors.WriteError for an OSError, naming the output it was writing (the block's
    error's file name when it is one of the temporary files, else all of them)."""
    from .errors import write_error
    outs, tmps = [Path(p) for p in paths], []
    try:
        for path in outs:
            path.parent.mkdir(parents=True, exist_ok=True)
            with held():
                fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
                os.close(fd)
                tmps.append(Path(name))
            os.chmod(tmps[-1], 0o666 & ~_umask())   # as open() would create it, not mkstemp's 0600
        yield tmps
        with held():
            check()
            for tmp, path in zip(tmps, outs):
                os.replace(tmp, path)
    except BaseException as e:
        with held():
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            if len(tmps) < len(outs):   # creating the temporary file of this one failed
                named = outs[len(tmps)]
            else:
                named = {str(t): p for t, p in zip(tmps, outs)}.get(str(e.filename), ", ".join(map(str, outs)))
            raise write_error(e, named) from None
        raise


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    """A scratch directory under the system's temporary folder (TMPDIR), created and
    removed whatever happens, signals held over both. Raises errors.WriteError naming the
    folder if it cannot be created, or for a full, read-only or forbidden write in the block."""
    from .errors import WRITE_ERRNOS, WriteError, os_error_cause
    tmp = None
    try:
        with held():
            tmp = Path(tempfile.mkdtemp(prefix=prefix))
        yield tmp
    except OSError as e:   # also tempfile's "No usable temporary directory" (ENOENT), which hides the cause
        if tmp is not None and e.errno not in WRITE_ERRNOS:
            raise
        where = tmp.parent if tmp is not None else os.environ.get("TMPDIR") or "/tmp"
        cause = os_error_cause(e)[0] if e.errno in WRITE_ERRNOS else "no writable folder (full or read-only?)"
        raise WriteError(f"cannot write a temporary folder in {where}: {cause}; free space there or "
                         f"set TMPDIR to another folder") from None
    finally:
        if tmp is not None:
            with held():
                shutil.rmtree(tmp, ignore_errors=True)
