"""Conventional digital baseline: the same layers as a non-spiking ANN, one pass per
inference, multiply-accumulates at 45 nm operation energies.

Source: M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014 (values via ../shared/HARDWARE.md section 4): int8 mult 0.2 pJ + int8 add
0.03 pJ; fp32 mult 3.7 pJ + fp32 add 0.9 pJ. MAC = mult + add by convention. Memory
traffic is not counted, which favours the baseline.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class CMOS45:
    name: str = "cmos45"
    mac_int8_j: float = (0.2 + 0.03) * 1e-12
    mac_fp32_j: float = (3.7 + 0.9) * 1e-12


BASELINE = CMOS45()
