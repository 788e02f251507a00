"""Backends and formats, one module each. BACKENDS maps a name to a run function
(build_dir, graph, spikes (N, T, F), timeout_s, progress) -> per-layer spikes.

A build's target (graph.target, from its manifest) picks the model: "emulator" is the
integer model of that chip (ahsar_deploy/emulator.py for Loihi, exporters/xylo.py's
run_emulator for Xylo); "xylosim" (rockpool's XyloSim) runs Xylo builds only; "lava" and
"norse" run Loihi builds only (model.net, model.nir). The Loihi emulator alone takes a
`device` keyword (a torch device: ahsar_deploy/torch_emulator.py). Each refuses the other chip's build
in one line naming the backends that run it.
"""
from __future__ import annotations

from ahsar_deploy.errors import BackendError
from hw_targets import is_xylo


def _loihi_only(backend: str, graph) -> None:
    if is_xylo(graph.target):
        raise BackendError(f"--backend {backend} runs Loihi builds (model.net, model.nir); this build is for "
                           f"{graph.target}: use --backend xylosim or emulator")


def _run_lava(build_dir, graph, spikes, timeout_s, progress):
    _loihi_only("lava", graph)
    from . import lava
    return lava.run(build_dir, spikes, graph.steps, timeout_s=timeout_s, progress=progress)


def _run_emulator(build_dir, graph, spikes, timeout_s, progress, device="cpu"):
    if is_xylo(graph.target):
        if device != "cpu":
            raise BackendError(f"--device {device}: the Xylo emulator runs on the CPU only; use --device cpu")
        from . import xylo
        return xylo.run_build(build_dir, graph, spikes, "emulator")
    from ahsar_deploy import emulator
    return emulator.run(graph, spikes, integer=True, device=device)


def _run_norse(build_dir, graph, spikes, timeout_s, progress):
    _loihi_only("norse", graph)
    from . import norse
    return norse.run(build_dir, graph, spikes)


def _run_xylosim(build_dir, graph, spikes, timeout_s, progress):
    if not is_xylo(graph.target):
        raise BackendError(f"--backend xylosim runs Xylo builds; this build is for {graph.target}: export "
                           f"with --target xylo-audio2, or use --backend lava, emulator or norse")
    from . import xylo
    return xylo.run_build(build_dir, graph, spikes, "xylosim")


# What `ahsar run`, `ad.run` and the README's backend table call the default
# (tests/test_defaults.py holds the three together): bit-exact with Lava and XyloSim and
# about 1000x faster than Lava, so leaving --backend out never costs a Lava run.
DEFAULT_BACKEND = "emulator"
BACKENDS = {"lava": _run_lava, "emulator": _run_emulator, "norse": _run_norse, "xylosim": _run_xylosim}
