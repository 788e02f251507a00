"""Intel Loihi (1): integer grid, chip limits and energy per operation, each cited.

Grid: Lava's bit-accurate fixed-point LIF and Dense models (lava-nc/lava
src/lava/proc/lif/models.py AbstractPyLifModelFixed / PyLifResetModelBitAcc,
src/lava/proc/dense/models.py, src/lava/utils/weightutils.py), as netx loads them
(lava-nc/lava-dl src/lava/lib/dl/netx/hdf5.py, utils.py optimize_weight_bits).
Limits and energies: Davies et al., "Loihi: A Neuromorphic Manycore Processor with
On-Chip Learning", IEEE Micro 38(1), 2018, Table 2 (numbers taken from a secondary
verbatim transcription, see ../shared/HARDWARE.md; marked 2° below).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoihiTarget:
    name: str = "loihi"
    description: str = "Intel Loihi 1, Lava fixed-point (bit-accurate) simulation"
    # --- integer grid (Lava fixed-point models) ---
    weight_min: int = -256          # 8-bit mixed-sign weights: clip to [-256, 255] ...
    weight_max: int = 254           # ... and drop one LSB, so mixed weights are even (weightutils)
    weight_step: int = 2
    weight_bits: int = 8
    act_shift: int = 6              # a_in << 6 (LIF.subthr_dynamics)
    vth_shift: int = 6              # vth << 6 (scale_threshold)
    vth_max: int = 131071           # 17-bit unsigned threshold mantissa
    decay_unity: int = 4096         # 12-bit decays; du stored as i_decay - 1 (ds_offset = 1)
    state_bits: int = 24            # u wraps modulo 2**24, v saturates at +-(2**23 - 1)
    # --- chip limits (Davies 2018, 2°) ---
    cores: int = 128
    neurons_per_core: int = 1024    # compartments per core
    fan_in_axons_per_core: int = 4096
    synapse_bytes_per_core: int = 128 * 1024
    # --- energy per operation, Davies 2018 Table 2 at 0.75 V (pre-silicon SDF/SPICE, 2°) ---
    energy_j: dict = field(default_factory=lambda: {
        "synaptic_op": 23.6e-12,       # synaptic spike operation (minimum)
        "neuron_update_active": 81e-12,
        "neuron_update_inactive": 52e-12,
        "spike_in_tile": 1.7e-12,      # spike delivered within a tile
    })
    time_s: dict = field(default_factory=lambda: {
        "synaptic_op": 3.5e-9, "neuron_update_active": 8.4e-9,
        "neuron_update_inactive": 5.3e-9, "spike_in_tile": 2.1e-9,
    })
    # Static power: none in Davies 2018; 3.34 W over 32 chips in Frady et al. 2020
    # gives about 104 mW per chip (derived, 2°). Reported, not added to per-op energy.
    static_power_w: float = 0.104

    @property
    def state_max(self) -> int:
        return 2 ** (self.state_bits - 1)


LOIHI = LoihiTarget()
