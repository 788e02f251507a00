"""IBM TrueNorth: an energy model only (no export: its grid is not Lava's).

Merolla et al., "A million spiking-neuron integrated circuit with a scalable
communication network and interface", Science 345(6197):668, 2014.
- Energy: 26 pJ per synaptic event, all-in (active and static power together), at
  0.775 V, 20 Hz mean rate and 128 active synapses per neuron (HARDWARE.md section 4;
  operating point 2°). Neuron updates, spike routing and static power are inside that
  figure, so they are not added again (static_power_w = None, energy_j has one entry).
- Limits (Merolla 2014, via secondary transcriptions, 2°; not in HARDWARE.md): 4096
  neurosynaptic cores, each 256 axons x 256 neurons through a binary 256 x 256 crossbar
  (weights come from 4 axon types per neuron), 1 ms time step in real-time operation.
  Mapping checks only neurons and axons per core: our layers' arbitrary 8-bit weights
  would need TrueNorth's weight-sharing scheme, which this estimate does not model.
- One chip per system: Merolla 2014's figures are one chip's; multi-chip TrueNorth boards
  are not modelled (chips_per_system = 1), so a network needing more than 4096 cores does
  not fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrueNorthTarget:
    name: str = "truenorth"
    description: str = "IBM TrueNorth (energy model only: 26 pJ per synaptic event, all-in)"
    deployable: bool = False
    weight_bits: int = 1                         # binary crossbar synapse
    cores: int = 4096
    neurons_per_core: int = 256
    fan_in_axons_per_core: int | None = 256
    fan_out_per_core: int | None = None          # each neuron targets one axon (not modelled)
    synapse_bytes_per_core: int | None = None    # fixed 256 x 256 crossbar, covered by the axon limit
    chips_per_system: int | None = 1             # one chip, as measured (multi-chip boards not modelled)
    system: str = "one chip"
    inter_chip_message_j: float | None = None    # one chip: no messages cross chips
    # a synaptic event: an active axon meeting a nonzero crossbar synapse (zeros are skipped)
    energy_j: dict = field(default_factory=lambda: {"synaptic_event": 26e-12})
    time_s: dict = field(default_factory=dict)
    static_power_w: float | None = None          # included in the 26 pJ figure
    step_time_s: float | None = 1e-3             # 1 ms tick in real-time operation (2°)
    energy_note: str = "Merolla 2014: 26 pJ per synaptic event, all-in (static included)"


TRUENORTH = TrueNorthTarget()
