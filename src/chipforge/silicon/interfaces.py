"""Off-die interfaces: HBM generations (bandwidth, price, PHY), chip-to-chip SerDes, host I/O.

PHYs are mostly analog and bump-limited, so their area does not shrink with the node (the same
assumption LLMCompass makes, Zhang et al. ISCA 2024, Sec. III-D); controllers are logic and do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import ceil

from chipforge.spec import ChipSpec, Link, MemoryLevel
from chipforge.spec.nodes import nodes

MM2 = 1e-6  # m2 per mm2
# HBM PHY and controller per 1024-bit stack interface on N7, from annotated A100 die photos
# (LLMCompass, Zhang et al. ISCA 2024, Table II): PHY 10.45 mm2, controller 5.707 mm2.
HBM_PHY_MM2_PER_1024B = 10.45
HBM_CTRL_MM2_N7_PER_1024B = 5.707
# DDR-class DRAM channel (64 bits): PHY + controller. Assumption: ~4 mm2 (a DDR3/4 x64 PHY is a
# ~3 mm2 strip of I/O cells plus its controller), node-independent like the HBM PHY.
DDR_CHANNEL_MM2 = 4.0
DDR_CHANNEL_BW = 17.0e9  # B/s: a DDR3-2133 x64 channel (TPU v1's 34 GB/s is two of them)
# SerDes lane, PHY + PCS, at the lane rates below. Assumption: ~0.3 mm2 per 100 Gb/s-class
# long-reach lane (a 112G PAM4 quad macro is ~1-1.5 mm2 in vendor floor plans); slower lanes are
# not smaller (their area is set by the same analog front end and bumps).
SERDES_LANE_MM2 = 0.3
# Host interface, PLLs, fuses, test and management logic, thermal sensors, pads.
# Assumption: 10 mm2 per chip (a PCIe x16 PHY alone is ~4-6 mm2).
IO_MM2 = 10.0


@dataclass(frozen=True)
class HbmGeneration:
    name: str
    stack_bandwidth: float  # B/s per stack at the JEDEC top pin rate
    interface_bits: int  # bits per stack
    price_per_gb_usd: float


HBM = {
    # 2.0 Gb/s x 1024 (JEDEC JESD235A HBM2; 2.4 Gb/s parts came later, so TPU v4's 1.2 TB/s from
    # 4 stacks counts as 5 here); price as HBM2e (assumption: an older generation is not dearer)
    "hbm2": HbmGeneration("hbm2", 256e9, 1024, 8.2),
    # [semi-hbm2e-stack-bw]; $656 for A100's 80 GB in LLMCompass Table IV = $8.2/GB
    "hbm2e": HbmGeneration("hbm2e", 461e9, 1024, 8.2),
    "hbm3": HbmGeneration("hbm3", 819e9, 1024, 15.0),  # [semi-hbm3-stack-bw, semi-hbm3-price-gb]
    "hbm3e": HbmGeneration(
        "hbm3e", 1229e9, 1024, 15.0
    ),  # [semi-hbm3e-stack-bw, semi-hbm3e-price-gb]
    # 2048 bits x 8 Gb/s [semi-hbm4-width]; price: HBM4 12-Hi ">$600/stack" of 36 GB vs HBM3E
    # $300 per 24 GB stack [semi-hbm3e-price-stack] -> ~$17/GB (assumption from the two)
    "hbm4": HbmGeneration("hbm4", 2048e9, 2048, 17.0),
}


def hbm_generation(level: MemoryLevel) -> HbmGeneration:
    """The HBM generation a level's name says ("HBM3e" -> hbm3e); unnamed: hbm3e (assumption)."""
    key = re.sub(r"[^a-z0-9]", "", level.name.lower())
    for name in sorted(HBM, key=len, reverse=True):
        if key.startswith(name):
            return HBM[name]
    return HBM["hbm3e"]


def hbm_stacks(level: MemoryLevel) -> int:
    """Stacks needed to deliver the level's bandwidth at the generation's top pin rate."""
    return ceil(level.bandwidth / hbm_generation(level).stack_bandwidth - 1e-9)


def offchip_memory_area(chip: ChipSpec) -> tuple[float, str]:
    """m2 of memory PHY + controller for the chip's off-chip memory, and a short description."""
    level = chip.hbm
    if level.kind == "dram":
        channels = ceil(level.bandwidth / DDR_CHANNEL_BW - 1e-9)
        return channels * DDR_CHANNEL_MM2 * MM2, f"{channels} DDR channels"
    gen, stacks = hbm_generation(level), hbm_stacks(level)
    width = gen.interface_bits / 1024
    ctrl = HBM_CTRL_MM2_N7_PER_1024B * nodes()["n7"].logic_density / chip.process.logic_density
    return stacks * width * (HBM_PHY_MM2_PER_1024B + ctrl) * MM2, f"{stacks} x {gen.name}"


def serdes_lane_rate(year: int) -> float:
    """b/s per lane by the chip's year: NVLink2 25G (2017), NVLink3 50G (2020), NVLink4/ICI 100G
    (2022+), per NVIDIA's Volta/Ampere/Hopper whitepapers."""
    if year >= 2022:
        return 100e9
    return 50e9 if year >= 2019 else 25e9


def link_lanes(link: Link, year: int) -> int:
    """SerDes lanes, both directions' bandwidth split evenly across directions."""
    per_port_bits = link.bandwidth / 2 / link.ports * 8
    return link.ports * ceil(per_port_bits / serdes_lane_rate(year) - 1e-9)


def serdes_area(chip: ChipSpec) -> float:
    """m2 of chip-to-chip SerDes over all links and ports."""
    return sum(link_lanes(link, chip.year) for link in chip.links) * SERDES_LANE_MM2 * MM2
