"""SynSense Xylo Audio 2 (SYNS61201): integer grid, chip limits and compute model, each cited.

Sources (rockpool 3.1.0 as installed, the rockpool repository at 42cee1c for its docs, and
xylosim 0.1.3, the C++ simulator rockpool's XyloSim runs):
[overview]  rockpool docs/devices/xylo-overview.ipynb: family table (XyloAudio 2: 16 SNN
            input channels, 1000 hidden neurons, 2 synaptic states, 8 output neurons, max.
            fanout 64, avg. fanout 32+32 (Syn1 and Syn2), input projection to and output
            projection from all 1000 hidden neurons) and the neuron-model notes ("up to 15
            input events per time-step per channel", "8-bit" input, recurrent and readout
            weights, "Subtractive reset, with up to 31 events generated per time-step per
            neuron", output neurons have "only one available input synapse" and generate
            "only one event per time-step"); bit-shift decay v' = v - (v >> dash), with a
            linear decay of 1 where v >> dash is 0, and dash = round(log2(tau / dt)).
[mapper]    rockpool devices/xylo/syns61201/xylo_mapper.py: le_16_input_channels ("Xylo only
            supports up to 16 input channels"), mapper(max_hidden_neurons=1000,
            max_output_neurons=8, "matching Xylo hardware"), output_neurons_cannot_be_recurrent.
[sim]       rockpool devices/xylo/syns61201/xylo_sim.py XyloSim.from_specification: weights_in
            (Nin, Nhidden, 2), weights_rec (Nhidden, Nhidden, 2), weights_out (Nhidden, Nout),
            one synaptic decay per output neuron.
[samna]     rockpool devices/xylo/syns61201/xylo_samna.py config_from_specification: weights,
            dashes and weight shifts cast to int8, thresholds to int.
[quant]     rockpool transform/quantize_methods.py global_quantize: bits_per_weight=8,
            bits_per_threshold=16 (signed).
[regs]      rockpool devices/xylo/syns61201/xa2_devkit_utils.py, CTRL1 register decoder:
            input / hidden / output weight bit shift read from bits [4:7], [8:11], [12:15]
            (three bits each, 0..7), biases enabled by one global bit.
[cpp]       xylosim src/v2/cpp/XyloIAFNeuron.h: BITS_STATE 16, BITS_WEIGHT 8,
            MAX_NUM_INP_SPIKES 15, MAX_NUM_SPIKES 31, MAX_NUM_OUT_SPIKES 1; dash_mem and
            dash_syns "should be 4 bits"; v_th, bias, v_mem, i_syn are int16_t.
            XyloIAFNeuron.cpp: decay and saturating adds; XyloLayer.cpp: step order.
[cycles]    rockpool devices/xylo/syns61201/power_cycles_model.py cycles_model: master-clock
            cycles per time step from the configuration and the spike rasters.
[intro]     rockpool docs/devices/quick-xylo/xylo-audio-intro.ipynb: "default of 50 Mhz" core
            clock; the power it prints (SNN core logic 542.9 uW, AFE 12.3 uW, IO 35.7 uW) was
            measured on a XyloAudio 3 board (the notebook's output says so), not Audio 2.
[kws]       Bos & Muir, "Micro-power spoken keyword spotting on Xylo Audio 2", arXiv 2406.15112
            (2024), abstract: 291 uW dynamic inference power, 6.6 uJ per inference (Aloha KWS).
[asc]       Ke, Khoei & Muir, arXiv 2410.23776 (2024), abstract: Xylo neuron and synapse state
            16 bit, weights 8 bit.

Where sources disagree or are silent, the field says so. The neuron model, step by step,
is in exporters/xylo.py (run_emulator).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class XyloTarget:
    name: str = "xylo-audio2"
    description: str = "SynSense Xylo Audio 2 (SYNS61201), rockpool XyloSim (xylosim C++ simulator)"
    deployable: bool = True
    # --- network shape: input -> hidden (recurrent) -> output [overview, mapper, sim] ---
    max_inputs: int = 16
    max_hidden: int = 1000
    max_outputs: int = 8
    hidden_synapses: int = 2            # two synaptic states per hidden neuron [overview, sim]
    output_synapses: int = 1            # one per output neuron [overview, sim]
    output_recurrent: bool = False      # output neurons cannot be recurrent [mapper]
    max_fanout: int = 64                # recurrent connections out of one hidden neuron [overview]
    avg_fanout_per_synapse: int = 32    # "32+32 (Syn1 and Syn2)": recurrent weight memory [overview]
    # --- integer grid ---
    weight_min: int = -128              # int8 weights, input / recurrent / readout [overview, samna, cpp]
    weight_max: int = 127
    weight_shift_max: int = 7           # one left shift per matrix; 3-bit register field [regs]
                                        # (xylosim: w << shift in int16, exact up to shift 8)
    state_min: int = -2 ** 15           # i_syn and v_mem: int16, saturating adds [cpp, asc]
    state_max: int = 2 ** 15 - 1
    threshold_min: int = 1              # int16 [cpp, quant]; <= 0 makes the spike loop run to
    threshold_max: int = 2 ** 15 - 1   # the spike cap every step, so it is refused here
    bias_min: int = -2 ** 15            # int16 in the simulator [cpp]; the silicon's bias width
    bias_max: int = 2 ** 15 - 1         # is not stated in rockpool (unconfirmed)
    dash_max: int = 15                  # dash_mem, dash_syn: 4 bits [cpp]
    dash_syn_min: int = 1               # dash 0 clears i_syn in the step its input arrives (the
                                        # decay follows the input), so no input reaches v_mem
    dash_mem_min: int = 0               # dash 0: v_mem keeps no memory (exact for decay 1.0)
    max_input_events: int = 15          # per channel per step [overview, cpp]
    max_hidden_spikes: int = 31         # per hidden neuron per step, reset by subtraction [overview, cpp]
    max_output_spikes: int = 1          # per output neuron per step [overview, cpp]
    reset: str = "subtract"             # v -= threshold per event [overview, cpp]
    spike_condition: str = ">="         # while v >= threshold [cpp]
    # --- compute and power [cycles, intro, kws] ---
    clock_hz: float = 50e6              # default core clock [intro]
    measured_power_w: dict = field(default_factory=lambda: {
        "aloha_kws_dynamic_inference": 291e-6,   # [kws], abstract
    })
    measured_energy_j: dict = field(default_factory=lambda: {
        "aloha_kws_per_inference": 6.6e-6,       # [kws], abstract
    })
    # No per-operation energy and no static power of Xylo Audio 2 are published in rockpool or
    # the papers above (unconfirmed); compute is modelled in clock cycles per step instead.
    energy_j: dict = field(default_factory=dict)
    time_s: dict = field(default_factory=dict)
    static_power_w: float | None = None
    step_time_s: float | None = None
    energy_note: str = ("no per-operation energy published: cycles per step from rockpool's "
                        "cycles_model; measured 291 uW / 6.6 uJ per inference for one KWS network "
                        "(Bos & Muir 2024)")

    def cycles_per_step(self, spec: dict, inputs=1.0, hidden=1.0, outputs=1.0) -> float:
        """Mean master-clock cycles the SNN core needs per time step, rockpool's own model
        (devices/xylo/syns61201/power_cycles_model.py cycles_model), for a spec from
        exporters.xylo.to_xylo. inputs / hidden / outputs: spike rasters (any shape, only
        nonzero counts) or firing probabilities 0..1; the defaults give rockpool's worst case.
        Returns cycles (float). Raises ModuleNotFoundError if rockpool is not installed."""
        import types

        from ahsar_deploy import samna_shim
        samna_shim.apply()
        from rockpool.devices.xylo.syns61201.power_cycles_model import cycles_model

        ns = types.SimpleNamespace
        w_in, w_rec, w_out = (np.asarray(spec[k]) for k in ("weights_in", "weights_rec", "weights_out"))
        config = ns(input=ns(weights=w_in[:, :, 0]),
                    reservoir=ns(weights=w_rec[:, :, 0],
                                 neurons=[ns(alias_target=None) for _ in range(w_rec.shape[0])]),
                    readout=ns(weights=w_out),
                    synapse2_enable=bool(np.any(w_in[:, :, 1]) or np.any(w_rec[:, :, 1])))
        cycles, _ = cycles_model(config, inputs, hidden, outputs)
        return float(cycles)

    def realtime_clock_hz(self, spec: dict, dt_s: float, margin: float = 0.2) -> float:
        """Clock that runs the worst case in real time at step dt_s (rockpool's est_clock_freq
        rule: worst-case cycles * (1 + margin) / dt)."""
        return self.cycles_per_step(spec) * (1 + margin) / dt_s


XYLO_AUDIO2 = XyloTarget()


def dash_keep(dash: int) -> float:
    """Fraction of a (large) state kept per step by bit-shift decay: 1 - 2**-dash (0 for
    dash 0). Small states decay by at least 1 per step [overview]."""
    return 0.0 if dash == 0 else 1.0 - 2.0 ** -dash


def nearest_dash(keep: float, lo: int, hi: int = XYLO_AUDIO2.dash_max) -> int:
    """rockpool's conversion dash = round(log2(tau / dt)) [overview], with tau / dt =
    -1 / ln(keep) steps for a per-step decay factor keep (0..1), clipped to lo..hi.
    keep 0 (no memory) gives lo; keep 1 (no decay) gives hi."""
    if keep <= 0.0:
        return lo
    if keep >= 1.0:
        return hi
    tau = -1.0 / np.log(keep)
    return int(np.clip(np.round(np.log2(tau)), lo, hi))
