"""Pinned float kernels: the same seed and data give the same bytes on any x86-64 CPU.

torch, MKL, oneDNN, numpy and OpenBLAS each pick their float kernels by the CPU they run
on (AVX-512, AVX2 or SSE; different blockings of the same sums), and torch's intra-op
threads split some sums by the thread count. So one seed trains to different weights on
two CPUs, and a build's float calibration can differ in its last digits. :func:`pin`
selects, by environment variables read when each library loads, code paths that every
x86-64 CPU with SSE4.2 runs (x86-64-v2: Intel since 2008, AMD since 2011) and whose
results do not depend on the thread count:

- ``ATEN_CPU_CAPABILITY=default``: ATen's kernels without vector extensions (torch's
  aten/src/ATen/native/DispatchStub.cpp);
- ``MKL_CBWR=COMPATIBLE,STRICT``: oneMKL's conditional numerical reproducibility, its
  SSE2 path, which gives the same results on Intel and compatible processors, and with
  STRICT the same for any thread count (oneMKL developer guide, "Obtaining Numerically
  Reproducible Results"); ``MKL_NUM_THREADS=1``: measured here, STRICT alone still let
  the thread count change a 24-12 network's weights (torch's own ops keep their threads);
- ``ONEDNN_MAX_CPU_ISA=SSE41``: oneDNN's kernels (convolutions) capped at SSE4.1
  (oneDNN docs, "CPU Dispatcher Control");
- ``OPENBLAS_CORETYPE=Nehalem``: numpy's and scipy's OpenBLAS (two builds) with their
  SSE4.2 kernels, a core name both builds know (OpenBLAS DYNAMIC_ARCH,
  driver/others/dynamic.c; scipy's build takes an unknown name such as Prescott as Katmai);
- ``NPY_DISABLE_CPU_FEATURES``: numpy's own loops in their baseline (SSE3) form
  (numpy docs, "CPU build options", runtime dispatch).

Measured by benchmarks/reproducibility.py on the demo: pinned, 1, 2 and 4 threads and
every native path forced in turn give one checkpoint and one build, byte for byte;
native, the same ten settings give eight. The pin cost about 28 % in the demo's training
(median 14.9 s against 11.6 s) and nothing measurable in its export; on MNIST-scale
training (1000 hidden) it about doubles the time, so the MNIST figures are stated with
their machine instead.

The CLI pins in every command before torch or numpy loads; ``AHSAR_KERNELS=native``
keeps each library's own choice. From Python, call :func:`pin` before importing torch
or numpy. numba's loops (lif_kernel.py) need nothing: they are compiled without
fastmath, so LLVM neither reorders nor fuses their float operations.
"""
from __future__ import annotations

import os
import sys

PINNED = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "MKL_NUM_THREADS": "1",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OPENBLAS_CORETYPE": "Nehalem",
    # every feature numpy 1.26 dispatches at run time above its x86-64 baseline (SSE3)
    "NPY_DISABLE_CPU_FEATURES": "SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2 AVX512F AVX512CD "
                                "AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL",
}
OPT_OUT = "AHSAR_KERNELS"          # "native": leave the libraries' own choices
_LOADED_TOO_EARLY = ("torch", "numpy")


def wanted(environ=os.environ) -> bool:
    """True unless AHSAR_KERNELS=native. Raises ValueError for any other value than
    "pinned", "native" or unset, naming the variable."""
    value = environ.get(OPT_OUT, "pinned").strip().lower()
    if value not in ("pinned", "native"):
        raise ValueError(f"{OPT_OUT}={environ[OPT_OUT]!r}: expected 'pinned' (the default) or 'native'")
    return value == "pinned"


def pin(environ=os.environ) -> bool:
    """Set PINNED in `environ` (the process's environment) unless AHSAR_KERNELS=native.
    Returns True if the pinned kernels are (or will be) in force, False with
    AHSAR_KERNELS=native. Raises RuntimeError if torch or numpy was imported already
    with other settings (they read them when they load: call pin first)."""
    if not wanted(environ):
        return False
    late = [m for m in _LOADED_TOO_EARLY if m in sys.modules]
    if late and environ is os.environ and any(environ.get(k) != v for k, v in PINNED.items()):
        raise RuntimeError(f"kernels.pin(): {', '.join(late)} already imported; call it before "
                           f"importing them, or set {OPT_OUT}=native")
    environ.update(PINNED)
    return True


def state() -> dict:
    """The float kernels in force in this process, as strings: torch's ATen capability
    ("DEFAULT", "AVX2", "AVX512"), MKL_CBWR, oneDNN's ISA cap, numpy's OpenBLAS core and
    "pinned" (True when all of them are PINNED's). No thread counts: under the pin they
    do not change the demo's bytes, and a checkpoint records this dict. Imports torch,
    numpy and threadpoolctl."""
    import numpy  # noqa: F401  (loads OpenBLAS, so threadpoolctl sees it)
    import torch
    from threadpoolctl import threadpool_info
    blas = next((i.get("architecture") for i in threadpool_info()
                 if i.get("internal_api") == "openblas" and "numpy" in i.get("filepath", "")), None)
    out = {"aten": torch.backends.cpu.get_cpu_capability(),
           "mkl_cbwr": os.environ.get("MKL_CBWR", "AUTO"),
           "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL"),
           "openblas": str(blas)}
    out["pinned"] = (out["aten"] == "DEFAULT" and out["openblas"] == PINNED["OPENBLAS_CORETYPE"]
                     and all(os.environ.get(k) == v for k, v in PINNED.items()))
    return out


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere), for the figures
    that are stated per machine."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
