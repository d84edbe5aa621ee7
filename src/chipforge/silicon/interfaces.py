"""Off-die interfaces: HBM generations (bandwidth, price, PHY), chip-to-chip SerDes, host I/O.

PHYs are mostly analog and bump-limited, so their area does not shrink with the node (the same
assumption LLMCompass makes, Zhang et al. ISCA 2024, Sec. III-D); controllers are logic and do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import ceil

from chipforge.errors import SpecError
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
# SerDes lane PHY, from annotated die photos (LLMCompass cost_model.py, Zhang et al. ISCA 2024):
# NVLink3 1.888 mm2 per 4-lane 50G link (0.47 per lane), NVLink4 0.965 mm2 per 2-lane 100G link
# (0.48 per lane); analog, so node-independent. Controller: 74.6M (NVLink3) and 86.6M (NVLink4)
# transistors per link, 0.37 and 0.43 M per Gb/s of lane rate: 0.4M per Gb/s, over the node's
# logic density (LLMCompass's convention, as for the HBM controller above).
SERDES_LANE_MM2 = 0.48
SERDES_CTRL_MTR_PER_GBPS = 0.4
# Host interface, PLLs, fuses, test and management logic, thermal sensors, pads.
# Assumption: 10 mm2 per chip (a PCIe x16 PHY alone is ~4-6 mm2).
IO_MM2 = 10.0

# CoWoS-class interposer cost per mm2: the H100's CoWoS-S package at $723 [semi-h100-cowos] over an
# interposer of (814 mm2 die + 6 HBM sites x 110 mm2) x 1.1 spacing = 1,621 mm2 -> $0.446/mm2.
# Held-out check: B200's (2 x 800 + 8 x 110) x 1.1 = 2,728 mm2 -> $1,217 vs $1,100
# [semi-b200-cowosl].
COWOS_USD_PER_MM2 = 723 / ((814 + 6 * 110) * 1.1)
HBM_FOOTPRINT_MM2 = 110.0  # an HBM stack's footprint on the interposer, ~11 x 10 mm (JEDEC outline)
INTERPOSER_SPACING = 1.1  # assumption: 10% of the interposer between dies for routing and keep-out
# What one more stack site costs on the interposer, used to choose between stack heights.
STACK_SITE_USD = HBM_FOOTPRINT_MM2 * INTERPOSER_SPACING * COWOS_USD_PER_MM2


@dataclass(frozen=True)
class HbmGeneration:
    name: str
    stack_bandwidth: float  # B/s per stack at the JEDEC top pin rate
    interface_bits: int  # bits per stack
    price_per_gb_usd: float
    stack_gb: tuple[int, ...]  # capacities (GB, as vendors label them) of the stacks sold


# Stack capacities on sale (stack_gb): HBM2 4-Hi/8-Hi 4 and 8 GB (TPU v4: 32 GiB in 4 stacks);
# HBM2e 8 and 16 GB (A100 80 GB = 5 x 16); HBM3 16 GB 8-Hi and 24 GB 12-Hi (H100 80 GB = 5 x 16,
# MI300X 192 GB = 8 x 24); HBM3E 24 GB 8-Hi and 36 GB 12-Hi [semi-hbm3e-stack-bw]; HBM4 36 GB
# 12-Hi [semi-hbm3e-price-stack] and 48 GB 16-Hi (assumption: the JEDEC 16-high option).
HBM = {
    # 2.0 Gb/s x 1024 (JEDEC JESD235A HBM2; 2.4 Gb/s parts came later, so TPU v4's 1.2 TB/s from
    # 4 stacks counts as 5 here); price as HBM2e (assumption: an older generation is not dearer)
    "hbm2": HbmGeneration("hbm2", 256e9, 1024, 8.2, (4, 8)),
    # [semi-hbm2e-stack-bw]; $656 for A100's 80 GB in LLMCompass Table IV = $8.2/GB
    "hbm2e": HbmGeneration("hbm2e", 461e9, 1024, 8.2, (8, 16)),
    # [semi-hbm3-stack-bw, semi-hbm3-price-gb]
    "hbm3": HbmGeneration("hbm3", 819e9, 1024, 15.0, (16, 24)),
    # [semi-hbm3e-stack-bw, semi-hbm3e-price-gb]
    "hbm3e": HbmGeneration("hbm3e", 1229e9, 1024, 15.0, (24, 36)),
    # 2048 bits x 8 Gb/s [semi-hbm4-width]; price: HBM4 12-Hi ">$600/stack" of 36 GB vs HBM3E
    # $300 per 24 GB stack [semi-hbm3e-price-stack] -> ~$17/GB (assumption from the two)
    "hbm4": HbmGeneration("hbm4", 2048e9, 2048, 17.0, (36, 48)),
}
# The HBM price's range, multipliers of a generation's: x $15/GB HBM3E [semi-hbm3e-price-gb]:
# $10.5/GB below HBM3E at $300 per 24 GB stack ($12.5/GB) [semi-hbm3e-price-stack]; $22.5/GB
# above HBM4's ">$600" per 36 GB stack (~$17/GB, same row); the extra headroom on the high side
# for a supply squeeze: assumption. The silicon and the datacenter tornadoes both take it.
HBM_PRICE_RANGE = (0.7, 1.5)


def hbm_generation(level: MemoryLevel) -> HbmGeneration:
    """The HBM generation a level's name says ("HBM3e" -> hbm3e); unnamed: hbm3e (assumption)."""
    key = re.sub(r"[^a-z0-9]", "", level.name.lower())
    for name in sorted(HBM, key=len, reverse=True):
        if key.startswith(name):
            return HBM[name]
    return HBM["hbm3e"]


def hbm_stacks(level: MemoryLevel) -> int:
    """Stacks on the package: see `hbm_purchase`."""
    return hbm_purchase(level)[0]


def hbm_purchase(level: MemoryLevel) -> tuple[int, int]:
    """(stacks, GB per stack) bought for the level. HBM is sold in whole stacks of a few heights,
    so a package carries at least the stacks its bandwidth needs at the generation's top pin rate,
    and enough whole stacks for its capacity; of those, the cheapest (GB at the generation's price
    plus each stack's interposer site), then the fewest stacks. A level that states its `stacks`
    (H200: six, run below the top pin rate) gets them, in the smallest height that holds it.
    The capacity a product quotes can be less than what it carries (B200: 180 GB usable of
    8 x 24 GB, hw-b200-hbm-cap); the package pays for every stack."""
    gen = hbm_generation(level)
    need_bw = ceil(level.bandwidth / gen.stack_bandwidth - 1e-9)
    gb = level.capacity / 1e9
    if level.stacks is not None:
        return level.stacks, _stack_height(level, gen, need_bw, gb)
    options = [(max(need_bw, ceil(gb / size - 1e-9)), size) for size in gen.stack_gb]
    return min(options, key=lambda o: (o[0] * (o[1] * gen.price_per_gb_usd + STACK_SITE_USD), o[0]))


def _stack_height(level: MemoryLevel, gen: HbmGeneration, need_bw: int, gb: float) -> int:
    """GB per stack for a level's stated stack count; a SpecError when no height fits."""
    where, n = f"`memory.{level.name}.stacks`", level.stacks
    if n < need_bw:
        raise SpecError(
            f"{where} must be >= {need_bw}, not {n}: {n} {gen.name} stacks deliver at most "
            f"{n * gen.stack_bandwidth / 1e12:.3g} TB/s of the {level.bandwidth / 1e12:.3g} TB/s"
        )
    fits = [size for size in gen.stack_gb if n * size >= gb - 1e-9]
    if not fits:
        least = ceil(gb / max(gen.stack_gb) - 1e-9)
        raise SpecError(
            f"{where} must be >= {least}, not {n}: {n} {gen.name} stacks of at most "
            f"{max(gen.stack_gb)} GB hold less than {gb:.4g} GB"
        )
    return min(fits)


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
    """m2 of chip-to-chip SerDes (PHY and controller) over all links and ports."""
    lanes = sum(link_lanes(link, chip.year) for link in chip.links)
    ctrl = SERDES_CTRL_MTR_PER_GBPS * serdes_lane_rate(chip.year) / 1e9 / chip.process.logic_density
    return lanes * (SERDES_LANE_MM2 + ctrl) * MM2
