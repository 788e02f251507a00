"""Make lava-nc 0.10 and lava-dl 0.6 importable on Python 3.11 without editing them.

Import this module (or call :func:`apply`) before anything from ``lava``. The two fixes
are the ones described in ../shared/ENV.md:

1. Python 3.11 dataclasses reject any unhashable default value (3.10 rejected only
   list/dict/set). ``lava/magma/compiler/var_model.py`` has fields whose default is a
   ``ByteEncoder()`` dataclass instance. While that one module is imported, dataclass
   field construction turns such a default into ``field(default_factory=deepcopy)``.
   The patch is removed right after; later imports find the module loaded, and Lava's
   worker processes are forked, so they inherit it.
2. ``lava.lib.dl.slayer`` imports its object-detection subpackage, which needs
   torchvision. With the CPU torch build torchvision is absent, so a placeholder module
   stands in for it (object detection alone is then unusable).
3. lava/magma/runtime/message_infrastructure/multiprocessing.py calls
   ``multiprocessing.set_start_method('fork')`` at import, which raises "context has
   already been set" once anything in the process (torch, scikit-learn) has fixed the
   start method. When that method is already 'fork' (the Linux default), the call is
   made idempotent for that one import.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import importlib.util
import sys
import types

_applied = False


def _unhashable_dataclass_instance(value: object) -> bool:
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)
            and type(value).__hash__ is None)


def _import_var_model() -> None:
    original = dataclasses._get_field  # CPython 3.11: _get_field(cls, name, type, kw_only)

    def get_field(cls, a_name, *args, **kwargs):
        default = cls.__dict__.get(a_name, dataclasses.MISSING)
        if _unhashable_dataclass_instance(default):
            setattr(cls, a_name, dataclasses.field(
                default_factory=functools.partial(copy.deepcopy, default)))
        return original(cls, a_name, *args, **kwargs)

    dataclasses._get_field = get_field
    try:
        importlib.import_module("lava.magma.compiler.var_model")
    finally:
        dataclasses._get_field = original


def _stub_object_detection() -> None:
    name = "lava.lib.dl.slayer.object_detection"
    if name in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    stub = types.ModuleType(name)
    stub.__doc__ = "placeholder: torchvision is not installed, slayer object detection is unavailable"
    sys.modules[name] = stub


def _import_message_infrastructure() -> None:
    import multiprocessing as mp

    if mp.get_start_method(allow_none=True) not in (None, "fork"):
        return  # leave Lava's own error: it needs forked workers
    original = mp.set_start_method
    mp.set_start_method = lambda method, force=False: original(method, force=True)
    try:
        importlib.import_module("lava.magma.runtime.message_infrastructure.multiprocessing")
    finally:
        mp.set_start_method = original


def apply() -> None:
    """Apply the fixes once; safe to call repeatedly."""
    global _applied
    if _applied:
        return
    if sys.version_info >= (3, 11):
        _import_var_model()
    _stub_object_detection()
    _import_message_infrastructure()
    _applied = True


apply()
