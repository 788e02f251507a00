"""Conventional digital baseline: the same layers as a non-spiking ANN, one pass per
inference, multiply-accumulates at 45 nm operation energies.

Source: M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014 (values via ../shared/HARDWARE.md section 4): int8 mult 0.2 pJ + int8 add
0.03 pJ; fp32 mult 3.7 pJ + fp32 add 0.9 pJ. MAC = mult + add by convention.
Arithmetic alone ignores memory traffic, which favours the baseline; the `*_sram`
variant adds one read of every weight per inference from the smallest SRAM of the same
table that holds all weights, in 64-bit words: 8 KB 10 pJ, 32 KB 20 pJ (2°), 1 MB
100 pJ (2°); above 1 MB, DRAM at its low end, 1.3 nJ per 64-bit access (HARDWARE.md).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CMOS45:
    name: str = "cmos45"
    mac_int8_j: float = (0.2 + 0.03) * 1e-12
    mac_fp32_j: float = (3.7 + 0.9) * 1e-12
    # (capacity in bytes, energy per 64-bit read) from small to large
    sram_read64_j: tuple = field(default=((8 * 1024, 10e-12), (32 * 1024, 20e-12),
                                          (1024 * 1024, 100e-12)))
    dram_read64_j: float = 1.3e-9

    def weight_reads_j(self, n_weights: int, bytes_per_weight: int) -> float:
        """Energy to read every weight once, 64 bits at a time, from the smallest memory
        that holds them all."""
        total = n_weights * bytes_per_weight
        words = -(-total // 8)
        per_word = next((e for cap, e in self.sram_read64_j if total <= cap), self.dram_read64_j)
        return words * per_word

    def ann(self, macs: int) -> dict:
        """Energy per inference of an ANN doing `macs` multiply-accumulates with as many
        weights (dense layers: one weight per MAC)."""
        int8, fp32 = macs * self.mac_int8_j, macs * self.mac_fp32_j
        return {"macs": macs, "int8_j": int8, "fp32_j": fp32,
                "int8_sram_j": int8 + self.weight_reads_j(macs, 1),
                "fp32_sram_j": fp32 + self.weight_reads_j(macs, 4),
                "source": "Horowitz ISSCC 2014, 45 nm"}


BASELINE = CMOS45()
