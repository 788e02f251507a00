"""Intel Loihi (1): integer grid, chip limits and energy per operation, each cited.

Grid: Lava's bit-accurate fixed-point LIF and Dense models (lava-nc/lava
src/lava/proc/lif/models.py AbstractPyLifModelFixed / PyLifResetModelBitAcc,
src/lava/proc/dense/models.py, src/lava/utils/weightutils.py), as netx loads them
(lava-nc/lava-dl src/lava/lib/dl/netx/hdf5.py, utils.py optimize_weight_bits);
../shared/HARDWARE.md sections 1 and 2.
Limits and energies: Davies et al., "Loihi: A Neuromorphic Manycore Processor with
On-Chip Learning", IEEE Micro 38(1), 2018, Table 2 (numbers taken from a secondary
verbatim transcription, see ../shared/HARDWARE.md sections 3 and 4; marked 2° below).
Chips per system: Pohoiki Springs, Intel's largest Loihi system (March 2020), 768 Loihi
chips on 24 Nahuku boards of 32 chips each (2°: Intel's press photo caption as reprinted
by the trade press, and WikiChip Fuse, "Intel Labs builds a neuromorphic system with 64 to
768 Loihi chips", 2019; not in HARDWARE.md). Smaller systems: Nahuku boards hold 8 to 32
chips, Kapoho Bay 2 (same sources). Loihi's mesh protocol addresses up to 16,384 chips
(WikiChip's Loihi page, 2°); no system that large was built.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LoihiTarget:
    name: str = "loihi"
    description: str = "Intel Loihi 1, Lava fixed-point (bit-accurate) simulation"
    deployable: bool = True         # export writes a netx build for it
    # --- integer grid (Lava fixed-point models, HARDWARE.md section 1) ---
    weight_min: int = -256          # 8-bit mixed-sign weights: clip to [-256, 255] ...
    weight_max: int = 254           # ... and drop one LSB, so mixed weights are even (weightutils)
    weight_step: int = 2
    weight_bits: int = 8            # weight mantissa bits (Dense num_weight_bits, default 8)
    # Weight exponent: Lava 0.10's Dense takes any integer weight_exp and shifts a_out with
    # numpy, with no range check and no silicon range stated (lava/proc/dense/process.py,
    # models.py). netx, which loads our builds, reads no exponent from the file (wgtExp is
    # ignored) and derives its own from the weights, which must be 8-bit: outside
    # [-256, 254] they are clipped (lava-dl netx/utils.py optimize_weight_bits, hdf5.py).
    # So a build cannot carry an exponent and calibration keeps weight_exp = 0. One
    # exponent per layer would scale all its weights alike anyway: it cannot rescue a
    # neuron whose weights round to 0 beside larger ones; passes/fidelity.py reports those.
    weight_exp_range: tuple[int, int] | None = None
    act_shift: int = 6              # a_in << 6 (LIF.subthr_dynamics)
    vth_shift: int = 6              # threshold scale: vth_eff = vth << 6 (scale_threshold)
    vth_max: int = 131071           # 17-bit unsigned threshold mantissa
    decay_unity: int = 4096         # 12-bit decays; du stored as i_decay - 1 (ds_offset = 1)
    decay_bits: int = 12            # du, dv: uint 12 bit (0..4095)
    # Neuron bias: v += bias_mant << bias_exp every step (lif/models.py scale_bias); bias_mant
    # signed 13 bit (-4096..4095), bias_exp unsigned 3 bit (PyLifModelBitAcc docstring).
    # netx loads a layer's `bias` as bias_mant with bias_exp fixed at 6 (netx/hdf5.py
    # get_neuron_params), so a build's integer bias is in weight units (b << 6, as a_in << 6).
    bias_mant_bits: int = 13
    bias_exp_bits: int = 3
    bias_exp: int = 6
    state_bits: int = 24            # u and v are 24 bit (held in int32)
    u_overflow: str = "wrap"        # u wraps modulo 2**24 (two-sided where in subthr_dynamics)
    v_overflow: str = "saturate"    # v clipped to +-(2**23 - 1)
    a_in_bits: int = 16             # Dense a_out / LIF a_in declared 16 bit; Lava does not saturate
    # --- chip limits (Davies 2018, 2°; HARDWARE.md section 3) ---
    cores: int = 128                # neuromorphic cores per chip (plus 3 x86 cores)
    neurons_per_core: int = 1024    # compartments per core
    fan_in_axons_per_core: int | None = 4096
    fan_out_per_core: int | None = 4096     # output axons (edges) per core
    synapse_bytes_per_core: int | None = 128 * 1024   # 128 KB synaptic state per core
    # --- systems of several chips (see the module docstring; 2°) ---
    chips_per_system: int | None = 768      # Pohoiki Springs; None would mean unlimited
    system: str = "Pohoiki Springs, 768 chips"
    # Energy of one spike message crossing from one chip to another: none found (the
    # transcription of Davies 2018 Table 2 in HARDWARE.md section 4 lists a spike within a
    # tile and per tile hop on the chip's mesh only), so None: inter-chip spikes are counted
    # and reported, their extra energy is not counted.
    inter_chip_message_j: float | None = None
    # --- energy per operation, Davies 2018 Table 2 at 0.75 V (pre-silicon SDF/SPICE, 2°) ---
    energy_j: dict = field(default_factory=lambda: {
        "synaptic_op": 23.6e-12,       # synaptic spike operation (minimum)
        "neuron_update_active": 81e-12,
        "neuron_update_inactive": 52e-12,
        "spike_in_tile": 1.7e-12,      # spike message delivered within a tile (hops not modelled)
    })
    time_s: dict = field(default_factory=lambda: {   # same table, time per operation
        "synaptic_op": 3.5e-9, "neuron_update_active": 8.4e-9,
        "neuron_update_inactive": 5.3e-9, "spike_in_tile": 2.1e-9,
    })
    # Static power: none in Davies 2018; 3.34 W over 32 chips in Frady et al. 2020
    # gives about 104 mW per chip (derived, 2°). Reported separately from dynamic energy.
    static_power_w: float | None = 0.104
    step_time_s: float | None = None   # not published; estimated from time_s (ahsar_deploy/energy_report.py)
    energy_note: str = ("Davies 2018 Table 2 per-operation energies (pre-silicon, 2°); "
                        "static 104 mW/chip derived from Frady 2020")

    @property
    def state_max(self) -> int:
        return 2 ** (self.state_bits - 1)

    def netx_inhibitory_ok(self, joint: np.ndarray, part: np.ndarray) -> bool:
        """False where Lava would not hold `part` (a layer's weight or weight_rec, even ints
        in [-256, 254]) exactly: netx shifts the layer's matrices together left by
        s = floor(log2(scale)) + is_mixed, scale from the joint min/max (lava-dl
        netx/utils.py optimize_weight_bits), and Lava's Dense then picks each matrix's own
        sign mode; an all-negative (inhibitory) matrix is clipped to magnitude 255
        (lava/utils/weightutils.py clip_weights), so one whose min reaches -256 after the
        shift loses weight there (-256 becomes -255, then truncated)."""
        joint, part = np.asarray(joint, dtype=np.float64), np.asarray(part, dtype=np.float64)
        if part.size == 0 or part.max() > 0 or part.min() >= 0:
            return True                      # not an inhibitory matrix
        mx, mn = joint.max(), joint.min()
        mixed = mx > 0
        scale = min(127 / mx, -128 / mn) if mixed else -256 / mn
        return -part.min() * 2.0 ** (np.floor(np.log2(scale)) + mixed) <= 255

    @property
    def bias_max(self) -> int:
        """Largest |bias mantissa| both signs hold: 2**12 - 1 = 4095 (signed 13 bit)."""
        return 2 ** (self.bias_mant_bits - 1) - 1


LOIHI = LoihiTarget()
