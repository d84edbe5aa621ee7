"""Hardware descriptions: immutable, validated, in SI base units.

A GPU and a TPU share one vocabulary: cores (SMs or TensorCores) hold matrix units (tensor cores
or systolic MXUs) and vector units; memory levels run from HBM inwards to on-chip SRAM; links
connect chips. Quantity fields accept strings with units ("3.35 TB/s") at the edges.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chipforge.dtypes import DType
from chipforge.errors import MAX_NAME, NOT_IN_NAMES, UnitError
from chipforge.spec.nodes import ProcessNode, nodes
from chipforge.units import fmt, parse_quantity


def _quantity(dimension: str):
    def parse(value):
        if not isinstance(value, str):
            return value
        try:
            return parse_quantity(value, dimension)
        except UnitError as err:  # re-raised as a pydantic error so the field path is kept
            raise ValueError(err.problem) from None

    return BeforeValidator(parse)


# Upper bounds: far beyond any chip (about 1e6 x the largest today), so that a typo or a hostile
# file (`flops_per_cycle = 1e302`) is refused here instead of overflowing a model downstream.
# Lower bounds likewise far below any chip: a clock of 1e-300 Hz or a bandwidth of 1e-300 B/s
# made times of 1e300 s whose energy overflowed to inf and NaN.
Bytes = Annotated[float, _quantity("bytes"), Field(ge=1, le=1e18)]  # 1 B .. 1 EB
ByteCount = Annotated[float, _quantity("bytes"), Field(ge=0, le=1e18)]  # 0 B .. 1 EB
Bandwidth = Annotated[float, _quantity("bandwidth"), Field(ge=1e3, le=1e18)]  # 1 kB/s .. 1 EB/s
Power = Annotated[float, _quantity("power"), Field(gt=0, le=1e7)]  # 10 MW
Frequency = Annotated[float, _quantity("frequency"), Field(ge=1e3, le=1e12)]  # 1 kHz .. 1 THz
FlopRate = Annotated[float, _quantity("flop_rate"), Field(ge=1e6, le=1e21)]  # 1 MFLOP/s..1 ZFLOP/s
Seconds = Annotated[float, _quantity("time"), Field(ge=0, le=3600)]
Area = Annotated[float, _quantity("area"), Field(gt=0, le=1.0)]  # 1 m2
EnergyPerByte = Annotated[float, _quantity("energy_per_byte"), Field(ge=0, le=1e-6)]  # 1 uJ/B
# Names are printed in tables, terminals and HTML: one line of printable text, not empty, not
# a page long (a control character such as ESC would drive the reader's terminal).
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=f"^[^{NOT_IN_NAMES}]*$")]
MAX_COUNT = 2**24  # cores, array sides, units, ports, dies
MAX_RATE = 2**40  # MACs or FLOP per cycle per unit

# The smallest output tile a tensor-core matrix instruction computes: AMD CDNA3's 4x4 MFMA
# blocks (AMD Instinct MI300 ISA, V_MFMA_F32_4X4X4_16B_F16); NVIDIA's smallest is 8x8 (PTX ISA,
# mma.m8n8k4). The engine also tries half tiles, so a side must be at least 2 for it.
MIN_TILE = 4

Dataflow = Literal["weight-stationary", "output-stationary", "tensor-core"]
MemoryKind = Literal["hbm", "dram", "cache", "sram"]
# Block-scaled formats a matrix unit multiplies natively, the block scales applied inside the MMA:
# OCP Microscaling (MX) v1.0 mxfp8/mxfp6/mxfp4 (32 elements share one E8M0 scale) and NVIDIA's
# nvfp4 (16 elements, an E4M3 scale). Transformer Engine's support matrix
# (nvidia.github.io/TransformerEngine/support_matrix.html) runs MXFP8BlockScaling and
# NVFP4BlockScaling on compute capability 10.x (Blackwell data center) only, not on Hopper (9.0).
BlockFormat = Literal["mxfp8", "mxfp6", "mxfp4", "nvfp4"]


class Frozen(BaseModel):
    # inf and nan are refused everywhere: a clock or bandwidth must be a finite number
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value, info: ValidationInfo):
        """`cores = true` is a mistake, not 1 core (pydantic's lax mode would take it)."""
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation is not bool:
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value


class MatrixUnit(Frozen):
    """One matrix engine: a systolic array (rows x cols MACs) or a GPU core's tensor cores.

    For `tensor-core`, rows x cols is the output tile one core computes at a time (the kernel's
    CTA tile); there is no systolic fill, and the tile sets padding and wave quantization.
    """

    rows: int = Field(
        gt=0, le=MAX_COUNT, description="array rows (systolic: K side under weight-stationary)"
    )
    cols: int = Field(gt=0, le=MAX_COUNT, description="array columns (systolic: N side)")
    count: int = Field(1, gt=0, le=MAX_COUNT, description="matrix units per core")
    dataflow: Dataflow = "weight-stationary"
    macs_per_cycle: dict[DType, Annotated[int, Field(gt=0, le=MAX_RATE)]] = Field(
        min_length=1, description="dense multiply-accumulates per cycle per unit, by input dtype"
    )
    double_buffered: bool = Field(True, description="next tile's weights load during the stream")
    block_scaled: tuple[BlockFormat, ...] = Field(
        (),
        description="block-scaled formats the unit multiplies natively (mxfp8, mxfp6, mxfp4, "
        "nvfp4); none stated: none, so training refuses --fp8-recipe mxfp8 and --dtype fp4",
    )

    @model_validator(mode="after")
    def _tile_sides(self) -> MatrixUnit:
        for side in ("rows", "cols"):
            value = getattr(self, side)
            if self.dataflow == "tensor-core" and value < MIN_TILE:
                raise PydanticCustomError(
                    "field_error",  # spec.loader names `field` in the path
                    "must be >= {least} for a tensor-core unit (the output tile; the smallest "
                    "MMA block is 4x4), not {value}",
                    {"field": side, "least": MIN_TILE, "value": value},
                )
        return self

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.macs_per_cycle)


class VectorUnit(Frozen):
    """SIMD lanes for elementwise, reductions, softmax and norms (fp32)."""

    count: int = Field(1, gt=0, le=MAX_COUNT, description="vector units per core")
    flops_per_cycle: float = Field(
        gt=0, le=MAX_RATE, description="fp32 FLOP per cycle per unit (FMA = 2)"
    )
    transcendentals_per_cycle: float = Field(
        gt=0, le=MAX_RATE, description="exp/rsqrt per cycle per unit"
    )


class MemoryLevel(Frozen):
    """A level of the memory hierarchy, outermost (HBM) first.

    `bandwidth` is what this level delivers towards the cores, summed over the chip.
    """

    name: Name = Field(description="the level's name; off-chip, it names the technology (HBM3E)")
    kind: MemoryKind = Field(description="hbm or dram (off-chip, first), sram or cache")
    capacity: Bytes = Field(description="bytes; per core when per_core is true")
    bandwidth: Bandwidth
    per_core: bool = Field(False, description="capacity and bandwidth are per core")
    holds_activations: bool = Field(
        False,
        description="the compiler keeps activations here between ops when they fit "
        "(TPU v1's unified buffer); otherwise every op reads and writes them off-chip",
    )
    energy_per_byte: EnergyPerByte | None = Field(
        None,
        description="J per byte read or written; None: the default of the memory technology "
        "the name says (HBM3E, LPDDR5X, GDDR7, DDR5, ...; perf/energy.py), on-chip levels SRAM "
        "energy scaled to the process node",
    )
    stacks: int | None = Field(
        None,
        gt=0,
        le=MAX_COUNT,
        description="HBM stacks the package carries, where the product states them; None: the "
        "cheapest whole stacks that meet capacity and bandwidth (silicon.interfaces.hbm_purchase)",
    )
    runtime_reserved: ByteCount | None = Field(
        None,
        description="bytes of the off-chip level the chip's runtime holds back from a program "
        "(capacity minus the limit the runtime grants, as its out-of-memory report or memory "
        "stats show it), where published; None: the family's rule (TPUs 0.25 GiB, others 3 GiB: "
        "cluster/memory.reserved_bytes)",
    )

    @field_validator("stacks")
    @classmethod
    def _stacks_are_hbm(cls, stacks: int | None, info: ValidationInfo) -> int | None:
        if stacks is not None and info.data.get("kind") != "hbm":
            raise ValueError("is for HBM levels only; drop it or set kind = 'hbm'")
        return stacks

    @field_validator("runtime_reserved")
    @classmethod
    def _reserve_below_capacity(cls, reserved: float | None, info: ValidationInfo):
        if reserved is None:
            return reserved
        if info.data.get("kind") not in ("hbm", "dram"):
            raise ValueError("is for the off-chip level (kind hbm or dram) only; drop it")
        capacity = info.data.get("capacity")
        if capacity is not None and reserved >= capacity:
            raise ValueError(
                f"({fmt(reserved, 'bytes', binary=True)}) must be below the level's capacity "
                f"({fmt(capacity, 'bytes', binary=True)}): it is the part the runtime holds "
                "back; give what the runtime's report shows"
            )
        return reserved


class Link(Frozen):
    """A chip-to-chip interface (NVLink, ICI, Infinity Fabric, PCIe, NIC)."""

    name: Name
    bandwidth: Bandwidth = Field(description="per chip, both directions summed")
    ports: int = Field(1, gt=0, le=MAX_COUNT)
    latency: Seconds = Field(1e-6, description="per message (alpha of the alpha-beta model)")


class ChipSpec(Frozen):
    """One accelerator package as a user of chipforge sees it."""

    name: Name = Field(description="the chip's name in every output")
    family: Literal["nvidia-gpu", "amd-gpu", "google-tpu", "forge", "asic"] = Field(
        description="selects the perf calibration (perf/calibration.py): nvidia-gpu, amd-gpu, "
        "google-tpu, forge (the house design: TPU factors), asic (other ASICs: TPU factors)"
    )
    vendor: Name = Field(description="who makes it")
    year: int = Field(ge=2010, le=2035, description="year of first volume shipment")
    node: Name = Field(description="process node key, e.g. n4, n3e")
    clock: Frequency = Field(description="matrix-unit clock (the one the published peaks imply)")
    sustained_clock: Frequency | None = Field(
        None,
        description="power-limited clock of long back-to-back matrix work, where published "
        "(training with --sustained-clock, sustained GEMM rows of validate); None: clock",
    )
    mla_decode_rate: FlopRate | None = Field(
        None,
        description="FLOP/s a published kernel measurement shows for absorbed-MLA decode attention "
        "on this chip (the serving engine's decode attention takes at least flops / rate); "
        "None: the engine's own tile-level estimate",
    )
    moe_decode_bandwidth: Bandwidth | None = Field(
        None,
        description="weight bytes/s a published kernel measurement shows for the MoE grouped GEMM "
        "at decode batch sizes on this chip (the serving engine's routed-expert matmuls in decode "
        "take at least their weight bytes / this); None: the engine's own estimate",
    )
    gemm_stream_bandwidth: Bandwidth | None = Field(
        None,
        description="operand bytes/s a published measurement shows the vendor GEMM library's "
        "memory-bound (skinny, decode-sized) FP8 x FP8 product streaming at on this chip; None: "
        "as any streaming kernel (the family's memory_frac)",
    )
    cores: int = Field(gt=0, le=MAX_COUNT, description="SMs, CUs or TensorCores")
    physical_cores: int | None = Field(
        None,
        gt=0,
        le=MAX_COUNT,
        description="cores on the die(s), enabled or not; None: cores (silicon area)",
    )
    matrix: MatrixUnit
    vector: VectorUnit
    memory: tuple[MemoryLevel, ...] = Field(min_length=1)
    links: tuple[Link, ...] = ()
    tdp: Power = Field(description="package power limit; the energy model draws it at full load")
    idle_power: Power | None = Field(None, description="W drawn when idle; None: 10% of TDP")
    dies: int = Field(1, gt=0, le=MAX_COUNT, description="compute dies in the package")
    notes: str = Field("", description="free text")

    @field_validator("node")
    @classmethod
    def _known_node(cls, node: str) -> str:
        if node not in nodes():
            raise ValueError(f"must be one of {', '.join(nodes())}, not {node!r}")
        return node

    @model_validator(mode="after")
    def _sustained_below_clock(self) -> ChipSpec:
        if self.sustained_clock is not None and self.sustained_clock > self.clock:
            raise ValueError(
                f"sustained_clock ({self.sustained_clock:.4g} Hz) must not exceed clock "
                f"({self.clock:.4g} Hz): it is the clock the power limit holds under load"
            )
        return self

    @property
    def throttles(self) -> bool:
        """Whether the chip states a sustained clock below its clock (what `at_sustained_clock`
        and `--sustained-clock` change)."""
        return self.sustained_clock is not None and self.sustained_clock < self.clock

    def at_sustained_clock(self) -> ChipSpec:
        """This chip at its power-limited sustained clock (`sustained_clock`): long back-to-back
        matrix work runs there, not at the boost clock the peaks quote. Matrix and vector rates
        scale with it; memory and link bandwidths are absolute and do not. The chip itself where
        no sustained clock is stated."""
        if not self.throttles:
            return self
        return self.model_copy(update={"clock": self.sustained_clock})

    @field_validator("memory")
    @classmethod
    def _offchip_first(cls, memory: tuple[MemoryLevel, ...]) -> tuple[MemoryLevel, ...]:
        if memory and memory[0].kind not in ("hbm", "dram"):
            raise ValueError(
                f"must start with the off-chip memory (kind hbm or dram), not {memory[0].kind}"
            )
        if any(m.runtime_reserved is not None for m in memory[1:]):
            raise ValueError(
                "states runtime_reserved on a level after the first; the runtime's reserve "
                "belongs to the off-chip level (the first), so move it there"
            )
        return memory

    @property
    def process(self) -> ProcessNode:
        return nodes()[self.node]

    # derived figures: properties, never stored twice
    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s in `dtype` (0 when the matrix unit does not support it)."""
        macs = self.matrix.macs_per_cycle.get(dtype, 0)
        return 2.0 * macs * self.matrix.count * self.cores * self.clock

    @property
    def matrix_units(self) -> int:
        return self.matrix.count * self.cores

    @property
    def vector_flops(self) -> float:
        """fp32 vector FLOP/s of the whole chip."""
        return self.vector.flops_per_cycle * self.vector.count * self.cores * self.clock

    @property
    def transcendentals_per_s(self) -> float:
        return self.vector.transcendentals_per_cycle * self.vector.count * self.cores * self.clock

    @property
    def hbm(self) -> MemoryLevel:
        return self.memory[0]

    @property
    def onchip_bytes(self) -> float:
        """Total on-chip SRAM and cache (per-core levels times cores)."""
        return sum(m.capacity * (self.cores if m.per_core else 1) for m in self.memory[1:])

    @property
    def activation_bytes(self) -> float:
        """On-chip bytes that keep activations between ops (levels with holds_activations)."""
        return sum(
            m.capacity * (self.cores if m.per_core else 1)
            for m in self.memory[1:]
            if m.holds_activations
        )

    @property
    def link_bandwidth(self) -> float:
        """Chip-to-chip bandwidth of the scale-up links, both directions summed (B/s)."""
        return sum(link.bandwidth for link in self.links[:1])

    def machine_balance(self, dtype: str) -> float:
        """FLOP per HBM byte at which compute and memory time are equal."""
        return self.peak_flops(dtype) / self.hbm.bandwidth

    @property
    def static_power(self) -> float:
        return self.idle_power if self.idle_power is not None else 0.1 * self.tdp
