"""SpiNNaker and SpiNNaker 2: energy models only (no export: their grid is not Lava's).

Energy per operation, from Höppner et al., "Dynamic power management for neuromorphic
many-core systems", IEEE TCAS-I 66(8):2973-2986, 2019 (arXiv 1903.08941), as Nengo's
keras-spiking energy estimator uses them (nengo/keras-spiking keras_spiking/model_energy.py,
`ModelEnergy.devices`, citing that paper); read there, not checked against the paper's
own table here (2°, ../shared/HARDWARE.md section 4):
- SpiNNaker (ARM968 cores, 130 nm): 13.3 nJ per synaptic operation, 26 nJ per neuron update;
- SpiNNaker 2 (28 nm test chip with dynamic voltage and frequency scaling):
  450 pJ per synaptic operation, 2.19 nJ per neuron update.
What they include, as keras-spiking applies them: the processing element's energy per
synaptic event and per neuron update. Charged here like keras-spiking charges them:
every input spike times its routed synapses (`synaptic_op`, zero weights included, as a
dense synaptic row is processed whole), and every neuron every time step
(`neuron_update_*`, active or not). Not included: spike routing between cores and chips,
idle/baseline power of the chip, SDRAM traffic, host I/O; so static_power_w is None and
the total is the operations' energy alone (a lower bound).

Step time: 1 ms, SpiNNaker's real-time time step (sPyNNaker's default machine time step;
2°), so latency = steps x 1 ms. Mapping (an assumption for the estimate, not a chip
limit): 256 neurons per core, sPyNNaker's usual neurons per core for LIF populations (2°);
cores: 16 application cores per chip on a system of one SpiNN-5 board's 48 chips (Furber
et al., "The SpiNNaker project", Proc. IEEE 102(5), 2014: 18 ARM968 cores per chip, 16
running neurons; 2°), and for SpiNNaker 2 one chip's 152 processing elements (Mayr,
Höppner, Furber, arXiv 1911.02385, 2019; 2°), one chip per system (multi-chip SpiNNaker 2
boards not modelled). Fan-in, fan-out and synapse memory are not checked (None).
Weights: 16 bit, sPyNNaker's synaptic word weight field (2°), used for the footprint.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpiNNakerTarget:
    name: str = "spinnaker"
    description: str = "SpiNNaker (energy model only: Höppner 2019 per-operation figures)"
    deployable: bool = False
    weight_bits: int = 16
    cores: int = 16                              # application cores per chip
    neurons_per_core: int = 256
    fan_in_axons_per_core: int | None = None
    fan_out_per_core: int | None = None
    synapse_bytes_per_core: int | None = None
    chips_per_system: int | None = 48            # one SpiNN-5 board
    system: str = "one SpiNN-5 board, 48 chips"
    inter_chip_message_j: float | None = None    # routing is not in the figures (see above)
    energy_j: dict = field(default_factory=lambda: {
        "synaptic_op": 13.3e-9, "neuron_update_active": 26e-9, "neuron_update_inactive": 26e-9})
    time_s: dict = field(default_factory=dict)   # no time per operation: the 1 ms real-time step
    static_power_w: float | None = None          # idle/baseline power not in the figures
    step_time_s: float | None = 1e-3
    energy_note: str = ("Höppner 2019 (via keras-spiking): 13.3 nJ/synaptic op, 26 nJ/neuron update; "
                        "operations only, no routing, idle power or I/O")


SPINNAKER = SpiNNakerTarget()
SPINNAKER2 = SpiNNakerTarget(
    name="spinnaker2",
    description="SpiNNaker 2 (energy model only: Höppner 2019 per-operation figures)",
    cores=152,
    chips_per_system=1,
    system="one chip",
    energy_j={"synaptic_op": 450e-12, "neuron_update_active": 2.19e-9, "neuron_update_inactive": 2.19e-9},
    energy_note=("Höppner 2019 (via keras-spiking): 450 pJ/synaptic op, 2.19 nJ/neuron update; "
                 "operations only, no routing, idle power or I/O"),
)
