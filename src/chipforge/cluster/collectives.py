"""Collective communication time with the alpha-beta model (Hockney; as NCCL's tuning model
and Calculon, Isaev et al. SC 2023): steps x latency + bytes / (achieved bandwidth).

`size_bytes` is the full buffer per rank: the reduced tensor (all_reduce), the gathered output
(all_gather), the input (reduce_scatter), everything a rank sends (all_to_all), the message
(send_recv). Algorithms:
- switched domain: ring (2(p-1) steps) or double binary tree (2 log2 p steps), the faster;
- torus: one ring per dimension (bidirectional with wrap-around: twice the link bandwidth;
  scaling-book "All-gather on a torus"), reduce-scatter dimension by dimension;
- beyond one domain: hierarchical (reduce-scatter inside, all-reduce across on each chip's NIC,
  all-gather inside), as NCCL's tree/CollNet and Megatron's DP across nodes.
An all-reduce inside one domain on a platform whose library curve was measured takes the
measured rate instead (`library_all_reduce`, `MEASURED_BUSBW`).
On switched topologies (GPU systems: NCCL/RCCL) every call also pays NCCL's per-call base latency
of the protocol it runs, and that protocol moves data at a fraction of the bus bandwidth; the
fastest protocol is taken, as NCCL's tuner does (`NCCL_PROTOCOLS`). Tori (TPU ICI) do not run NCCL.
"""

from __future__ import annotations

import math
from functools import cache

from chipforge.cluster.chipkey import preset_like
from chipforge.cluster.topology import Topology
from chipforge.errors import ChipforgeError
from chipforge.spec.models import ChipSpec

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
SPANS = ("auto", "up", "out")
# Achieved fraction of the link bandwidth by large collectives: NCCL all-reduce bus bandwidth
# on 8x H100 NVLink is ~360-380 of 450 GB/s (nccl-tests, NVIDIA DGX H100 user guide), and
# ~40-45 of 50 GB/s on 400G InfiniBand. One global constant for every link (not fitted per case).
BANDWIDTH_EFFICIENCY = 0.8
# NCCL's cost model (src/graph/tuning.cc, ncclTopoTuneModel; NCCL 2.12-2.2x): time = baseLat +
# steps x hop latency + bytes / bandwidth, with the protocol NCCL predicts fastest. Ring baseLat
# per protocol (LL 6.6, LL128 14.0, Simple 8.4 us) and the protocol's share of the bus bandwidth
# (LL 0.5: each 8-byte line carries 4 B of data and a 4 B flag; LL128 0.92 = 120/128; Simple 1).
# Hop latency and bandwidth stay the topology's (`up_latency`, link bandwidth x efficiency).
# Not fitted: these are NCCL's own constants. A 2 MiB TP-4 all-reduce on A100 NVLink: 33.5 us
# (Simple) vs 25.1 us without the base latency (nccl-tests all_reduce at 2 MB: ~30-40 us).
NCCL_PROTOCOLS = ((6.6e-6, 0.5), (14.0e-6, 0.92), (8.4e-6, 1.0))  # (base s, bandwidth share)


def _ring(kind: str, size: float, p: int, bw: float, alpha: float) -> float:
    """A ring over p ranks at `bw` B/s per rank per direction."""
    if p <= 1:
        return 0.0
    frac = (p - 1) / p
    if kind == "all_reduce":
        ring = 2 * (p - 1) * alpha + 2 * frac * size / bw
        tree = 2 * math.ceil(math.log2(p)) * alpha + 2 * size / bw  # double binary tree
        return min(ring, tree)
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (p - 1) * alpha + frac * size / bw
    return alpha + size / bw  # send_recv


def _split(group: int, cap: int) -> tuple[int, int]:
    """(ranks inside one domain, domains) for `group` ranks packed into domains of `cap`: a
    group larger than a domain fills each domain with the largest block of it that divides
    the group, as jobs are placed in equal blocks of a domain that does not divide them (MLPerf
    Training NVIDIA GB200/GB300 configs: SEGMENT=16 trays, 64 of an NVL72 rack's 72 GPUs)."""
    if group <= cap:
        return group, 1
    inner = _largest_divisor(group, cap)
    return inner, group // inner


@cache
def _largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of n that is at most cap: counted down from cap, O(cap) (a domain's
    size, <= thousands), not O(sqrt n) (2**31 steps, 90 s, for a 2**62-chip group)."""
    return next(d for d in range(min(n, cap), 0, -1) if n % d == 0)


def _torus(kind: str, size: float, group: int, topo: Topology) -> float:
    """Dimension-ordered rings over the sub-torus the group occupies."""
    left, t = group, 0.0
    dims = []
    for d in topo.dims:
        take = math.gcd(left, d)
        if take > 1:
            dims.append((take, topo.wrap))
            left //= take
    if left > 1:  # does not factor into the pod: a ring without wrap-around
        dims.append((left, False))
    alpha, link = topo.up_latency, topo.link_bandwidth * BANDWIDTH_EFFICIENCY
    if kind == "send_recv":
        return alpha + size / link
    if kind == "all_to_all":  # bisection bound: mean distance d/4 (wrap) or d/3 per dimension
        hops = sum(d / (4 if w else 3) for d, w in dims)
        return sum(d - 1 for d, _ in dims) * alpha + size * hops / (2 * len(dims) * link)
    chunk = size
    for d, w in dims:
        bw = link * (2 if w else 1)
        phases = 2 if kind == "all_reduce" else 1
        t += phases * ((d - 1) * alpha + (d - 1) / d * chunk / bw)
        chunk /= d
    return t


def collective_time(
    kind: str,
    size_bytes: float,
    group: int,
    topo: Topology,
    *,
    span: str = "auto",
    stride: int = 1,
    up_share: float = 1.0,
) -> float:
    """Seconds for one collective of `kind` over `group` ranks on `topo`.

    span: "up" keeps the group inside one scale-up domain; "out" puts every rank in a different
    domain (scale-out only); "auto" packs ranks spaced `stride` chips apart into domains.
    up_share: the share of the scale-up bandwidth the collective gets (a communicator capped to
    fewer CTAs than the channels NCCL would run there: Topology.nccl_channels).
    """
    if kind not in KINDS:
        raise ChipforgeError(f"`kind` must be one of {', '.join(KINDS)}, not {kind!r}")
    if span not in SPANS:
        raise ChipforgeError(f"`span` must be one of {', '.join(SPANS)}, not {span!r}")
    if group <= 1 or size_bytes <= 0:
        return 0.0
    if topo.kind == "torus":
        return _collective(kind, size_bytes, group, topo, span, stride, 1.0)
    return min(
        base + _collective(kind, size_bytes, group, topo, span, stride, share, up_share)
        for base, share in NCCL_PROTOCOLS
    )


def _collective(
    kind: str,
    size_bytes: float,
    group: int,
    topo: Topology,
    span: str,
    stride: int,
    f: float,
    up: float = 1.0,
) -> float:
    """The alpha-beta time with every bandwidth scaled by `f` (the protocol's share) and the
    scale-up bandwidth by `up` too."""
    if span == "up":
        inner, outer = group, 1
    elif span == "out":
        inner, outer = 1, group
    else:
        inner, outer = _split(group, max(1, topo.domain // max(1, stride)))
    inside = _inside(kind, size_bytes, inner, topo, f * up)
    if outer == 1:
        return inside
    nic = topo.nic_bandwidth * BANDWIDTH_EFFICIENCY / topo.oversubscription * f
    alpha = topo.out_latency
    if kind == "all_reduce":  # hierarchical: RS inside, AR across on 1/inner, AG inside
        across = _ring("all_reduce", size_bytes / inner, outer, nic, alpha)
        return (
            _inside("reduce_scatter", size_bytes, inner, topo, f * up)
            + across
            + _inside("all_gather", size_bytes, inner, topo, f * up)
        )
    if kind in ("all_gather", "reduce_scatter"):  # NIC carries 1/inner of the buffer
        return _inside(kind, size_bytes, inner, topo, f * up) + _ring(
            kind, size_bytes / inner, outer, nic, alpha
        )
    if kind == "all_to_all":  # the share bound for other domains crosses the NIC
        cross = size_bytes * (group - inner) / group
        return inside * inner / group + (outer - 1) * alpha + cross / nic
    return alpha + size_bytes / nic  # send_recv across domains


def _inside(kind: str, size: float, p: int, topo: Topology, f: float = 1.0) -> float:
    if p <= 1:
        return 0.0
    if topo.kind == "torus":
        return _torus(kind, size, p, topo)
    return _ring(kind, size, p, topo.up_bandwidth * BANDWIDTH_EFFICIENCY * f, topo.up_latency)


def expert_all_to_all(
    route_bytes: float,
    routes: int,
    group: int,
    topo: Topology,
    *,
    stride: int = 1,
    limit: tuple[int, int] = (0, 0),
) -> float:
    """Seconds for one MoE dispatch (or combine) as DeepEP runs it across scale-up domains
    (DeepSeek-V3 report Sec. 3.2.2; DeepEP's normal kernels): a token goes over the scale-out
    network once per remote domain that hosts one of its `routes` experts (to the GPU of the same
    in-domain index) and is forwarded inside the domain over the scale-up links to each expert's
    GPU, the two stages pipelined. `route_bytes`: what one rank sends per route (its tokens'
    rows). With routes spread evenly over the group, a token reaches a given remote domain with
    probability 1 - (1 - 1/domains)^routes. `limit` (groups, chosen): group-limited routing
    (ModelConfig.expert_groups, group_top_k; DeepSeek-V3 Sec. 2.1.2): a token's experts lie in
    `chosen` of `groups` equal groups; when each domain holds whole groups (groups a multiple of
    the domains, as DeepSeek places one per node), a domain is reached when one of its groups is
    chosen, 1 - C(groups - g, chosen) / C(groups, chosen) with g groups per domain (every chosen
    group taken to hold one of the token's experts). Otherwise the routes spread evenly.
    Inside one domain, or on a torus: the all-to-all."""
    total = route_bytes * routes
    if group <= 1 or total <= 0:
        return 0.0
    inner, outer = _split(group, max(1, topo.domain // max(1, stride)))
    if topo.kind == "torus" or outer == 1:
        return collective_time("all_to_all", total, group, topo, stride=stride)
    remote = (outer - 1) * (1 - (1 - 1 / outer) ** routes)
    groups, chosen = limit
    if groups and chosen and groups % outer == 0:
        g = groups // outer
        remote = (outer - 1) * (1 - math.comb(groups - g, chosen) / math.comb(groups, chosen))
    nic = topo.nic_bandwidth * BANDWIDTH_EFFICIENCY / topo.oversubscription
    across = (outer - 1) * topo.out_latency + route_bytes * remote / nic
    return max(across, _inside("all_to_all", total, inner, topo))


# RCCL all_reduce bus bandwidth (B/s) by message size on 8 GPUs of one platform, from a
# measurement that states its setup. mi300x: Azure ND MI300X v5 (8 x MI300X, xGMI), RCCL
# 2.22.3-develop, ROCm 6.8.5, rccl-tests all_reduce in place, 1 KB to 8 GB in powers of two:
# Azure AI-benchmarking-guide, Azure_Results/ND_MI300X_v5_results.md ("RCCL Bandwidth"), as held
# in github.com/yosoyjay/AI-benchmarking-guide (the copy data/sustained_gemm.csv cites). Its
# large-message plateau, 317 GB/s, is 71 % of the 448 GB/s the platform's links carry each way;
# at 8-32 MB it is 132-230 GB/s, below what the alpha-beta model gives there.
MEASURED_BUSBW: dict[str, tuple[tuple[int, float], ...]] = {
    "mi300x": tuple(
        (2**k, gbs * 1e9)
        for k, gbs in zip(
            range(10, 34),
            (
                0.04,
                0.07,
                0.15,
                0.29,
                0.59,
                1.13,
                2.22,
                4.18,
                7.50,
                13.01,
                22.41,
                43.41,
                82.53,
                131.57,
                171.46,
                230.35,
                266.34,
                290.81,
                302.80,
                308.89,
                313.92,
                315.06,
                314.85,
                316.82,
            ),
            strict=True,
        )
    ),  # fmt: skip
}
MEASURED_RANKS = 8  # the measurements above are 8-GPU all-reduces


def measured_busbw(curve: tuple[tuple[int, float], ...], size: float) -> float:
    """Bus bandwidth at `size` bytes: log-linear between the measured sizes, the end values
    beyond them."""
    if size <= curve[0][0]:
        return curve[0][1]
    for (s0, b0), (s1, b1) in zip(curve, curve[1:], strict=False):
        if size <= s1:
            w = math.log(size / s0) / math.log(s1 / s0)
            return math.exp((1 - w) * math.log(b0) + w * math.log(b1))
    return curve[-1][1]


def measured_platform(chip: ChipSpec) -> str | None:
    """The MEASURED_BUSBW entry measured on this chip: the preset of that name whose content,
    all but the name, is the chip's (`chipkey.preset_like`)."""
    return preset_like(chip, tuple(MEASURED_BUSBW))


def library_all_reduce(chip: ChipSpec, size: float, p: int, topo: Topology) -> float:
    """Seconds for an all-reduce of `size` bytes per rank over `p` ranks of one domain, called
    in the vendor collective library (NCCL, RCCL: a training framework's TP all-reduce, a
    serving engine's above its own kernel's limit). Where the chip's platform has a measured
    library curve (`MEASURED_BUSBW`, 8 ranks in one domain) it moves data at the measured bus
    bandwidth at its size (rccl-tests/nccl-tests `busbw`: time = size x 2 (p - 1) / p / busbw),
    interpolated log-linearly between the measured sizes; elsewhere `collective_time` prices
    it. The measurement belongs to the chip's content, not its name (`measured_platform`)."""
    platform = measured_platform(chip)
    curve = MEASURED_BUSBW.get(platform) if platform else None
    if curve and p == MEASURED_RANKS and p <= topo.domain:
        return size * 2 * (p - 1) / p / measured_busbw(curve, size)
    return collective_time("all_reduce", size, p, topo)
