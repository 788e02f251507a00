"""Backends and formats, one module each. BACKENDS maps a name to a run function
(build_dir, graph, spikes (N, T, F), timeout_s, progress) -> per-layer spikes."""
from __future__ import annotations


def _run_lava(build_dir, graph, spikes, timeout_s, progress):
    from . import lava
    return lava.run(build_dir, spikes, graph.steps, timeout_s=timeout_s, progress=progress)


def _run_emulator(build_dir, graph, spikes, timeout_s, progress):
    from ahsar_deploy import emulator
    return emulator.run(graph, spikes, integer=True)


def _run_norse(build_dir, graph, spikes, timeout_s, progress):
    from . import norse
    return norse.run(build_dir, graph, spikes)


BACKENDS = {"lava": _run_lava, "emulator": _run_emulator, "norse": _run_norse}
