"""Let rockpool's Xylo device package import without SynSense's `samna` library.

Import this module (or call :func:`apply`) before anything from ``rockpool``, as
``ahsar_deploy.lava_compat`` is applied before lava.

Why: ``rockpool.devices.xylo`` (rockpool 3.1.0, devices/xylo/__init__.py) imports all
its chip subpackages, and several of their modules use `samna` at import time, some
unguarded: devices/xylo/syns65302/xa3_devkit_utils.py runs ``from
samna.xyloAudio3.configuration import XyloConfiguration`` and reads
``samna.BasicSinkNode_xylo_audio3_event_output_event`` at module level. `samna` is the
driver library for SynSense's dev kits; the package registry's `samna` is a stub that
fails to import, so the whole device package fails with it, although the part we use,
the Xylo Audio 2 simulator ``rockpool.devices.xylo.syns61201.XyloSim`` (backed by the
C++ package `xylosim`), needs no samna at all.

What: a meta-path finder, put first on ``sys.meta_path``, that answers every import of
``samna`` and ``samna.*`` with an empty package module. Reading any public attribute of
such a module (``samna.xyloCore2.configuration.XyloConfiguration``, ``samna.graph``)
gives a placeholder class; its attributes are placeholders too, and calling or
instantiating one raises ModuleNotFoundError naming the attribute. So rockpool's
hardware classes (XyloSamna, config_from_specification, ...) import but fail with a clear
message when used. Dunder attributes are absent: the module has no ``__version__``, so
rockpool's ``check_samna_available`` (utilities/backend_management.py) reports samna as
unavailable, which is true.

Consequence: with the shim applied, a real samna installed beside it is shadowed too;
this toolchain never drives Xylo hardware, only the simulator. Idempotent: applying it
again does nothing. Nothing installed is edited.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

NAME = "samna"


def _absent(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"{name} is unavailable: samna is replaced by an empty stand-in "
                               f"(ahsar_deploy.samna_shim); Xylo hardware access needs SynSense's samna",
                               name=NAME)


class _Placeholder(type):
    """Metaclass of placeholder classes: attributes are placeholders, calls raise."""

    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _placeholder(f"{cls.__qualname__}.{attr}")

    def __call__(cls, *args, **kwargs):
        raise _absent(cls.__qualname__)


def _placeholder(qualname: str) -> type:
    return _Placeholder(qualname.rsplit(".", 1)[-1], (), {"__qualname__": qualname,
                                                          "__module__": NAME})


def _module_getattr(module_name: str):
    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {attr!r}")
        return _placeholder(f"{module_name}.{attr}")
    return __getattr__


class _EmptySamna(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder and loader of empty package modules for `samna` and `samna.*`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == NAME or fullname.startswith(NAME + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return None                       # default module creation

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = ("empty stand-in for SynSense's samna (ahsar_deploy.samna_shim): "
                          "Xylo hardware access is unavailable, the simulator works")
        module.__path__ = []              # a package, so samna.a.b imports too
        module.__getattr__ = _module_getattr(module.__name__)


def applied() -> bool:
    """True when the finder is on sys.meta_path."""
    return any(isinstance(f, _EmptySamna) for f in sys.meta_path)


def apply() -> None:
    """Install the finder once; safe to call repeatedly. A `samna` imported before (real
    or not) stays in sys.modules as it is: apply this before rockpool is imported."""
    if not applied():
        sys.meta_path.insert(0, _EmptySamna())


apply()
