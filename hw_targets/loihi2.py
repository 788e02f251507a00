"""Intel Loihi 2: the same Lava fixed-point grid as Loihi, Loihi 2's chip limits, and an
energy *estimate* (no per-operation energy of Loihi 2 is published).

Grid. Our Lava backend already runs Loihi 1's bit-accurate LIF and Dense process
models under Lava's `Loihi2SimCfg(select_tag="fixed_pt")` (../shared/HARDWARE.md
section 1, exporters/lava.py): Lava has one fixed-point CUBA-LIF model, used for both
chips. So a loihi2 build is the same netx file, integer grid, emulator and Lava run as a
loihi build; only the limits and the energy model differ. Whether Loihi 2 silicon (its
neurons are microcode) matches that model bit for bit is unconfirmed; its weight
precision and fan-in/fan-out limits are unconfirmed too (HARDWARE.md section 3), so
fan-in and fan-out are not checked (None). Graded spikes carry 24 bits in Lava
(proc/sdn/models.py s_out precision 24); our builds use binary spikes.

Limits (HARDWARE.md section 3, all 2°): 128 neuromorphic cores and 6 Lakemont cores
(Loihi 2 brief 2021); 192 KB memory per core (brief; treated here as the bound on
synapse memory, although the core shares it with neuron state); at most 8192 neurons per
core (wikichip).

Chips per system (2°, not in HARDWARE.md): Hala Point, Intel's largest Loihi 2 system
(2024, built with Sandia National Laboratories), 1,152 Loihi 2 chips with "140,544
neuromorphic processing cores" (Intel's announcement as quoted in the press). That is 122
cores per chip, fewer than the 128 used here; 128 is kept as the chip's own figure. The
board users get, Kapoho Point, holds 8 Loihi 2 chips (Intel's Loihi 2 announcement, 2021,
as reported by the trade press, 2°).

Energy assumptions (an estimate, reported as such):
- per operation: Loihi 1's Davies 2018 Table 2 values, unchanged (assumption: no Loihi 2
  per-operation figure is published; Loihi 2 is built in Intel 4 instead of 14 nm, so
  this is more likely an over- than an under-estimate, but that is unconfirmed);
- time per operation: Loihi 1's, for the same reason;
- static power 0.232 W per chip: measured in lava-dl's PilotNet LIF benchmark on one
  Loihi 2 chip (tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb: 0.679 W total,
  0.232 W static, 408.91 fps; HARDWARE.md section 4).
"""
from __future__ import annotations

from dataclasses import dataclass

from .loihi import LoihiTarget


@dataclass(frozen=True)
class Loihi2Target(LoihiTarget):
    name: str = "loihi2"
    description: str = "Intel Loihi 2, Lava fixed-point model (same as loihi); energy estimated"
    cores: int = 128
    neurons_per_core: int = 8192
    fan_in_axons_per_core: int | None = None      # unconfirmed
    fan_out_per_core: int | None = None           # unconfirmed
    synapse_bytes_per_core: int | None = 192 * 1024
    chips_per_system: int | None = 1152           # Hala Point (2°)
    system: str = "Hala Point, 1152 chips"
    static_power_w: float | None = 0.232
    energy_note: str = ("ESTIMATE: Loihi 1 per-operation energies assumed (no Loihi 2 figure "
                        "published); static 0.232 W/chip measured by lava-dl's PilotNet LIF benchmark")


LOIHI2 = Loihi2Target()
