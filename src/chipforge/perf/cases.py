"""Single-chip measured cases: what was run, on which chip, and how to read the figure.

Each case names a published figure (chipforge.data) and builds the workload that produced it
from what the source publishes; nothing here restates the measured value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from chipforge.data import published, sustained_gemm
from chipforge.perf.result import Result
from chipforge.workload import Graph, MatMul, build, load_model, parse_workload

UNIT_SCALE = {"TFLOPS": 1e12, "TOPS": 1e12, "tokens/s": 1.0}


@dataclass(frozen=True)
class Case:
    id: str
    chip: str
    kind: str  # gemm | tpu-app | decode | gemm-sustained
    workload: Callable[[], Graph]
    metric: Callable[[Graph, Result], float]  # the predicted figure, in the unit's SI base
    # the clock the run is priced at: "boost" (the preset's clock, burst benchmarks) or
    # "sustained" (ChipSpec.at_sustained_clock, long back-to-back runs)
    clock: str = "boost"

    @property
    def row(self) -> dict[str, str]:
        return sustained_gemm()[self.id] if self.clock == "sustained" else published()[self.id]

    @property
    def published(self) -> float:
        return float(self.row["value"]) * UNIT_SCALE[self.row["unit"]]

    @property
    def source(self) -> str:
        return self.row["source"]


def _flops_per_s(graph: Graph, result: Result) -> float:
    return graph.flops / result.time_s


def _tokens_per_s(graph: Graph, result: Result) -> float:
    return graph.tokens / result.time_s


def _gemm_case(case_id: str, chip: str, dtype: str) -> Case:
    """A MAMF row: the best shape it found, MxNxK, as the source prints it."""
    shape = re.search(r"(\d+)x(\d+)x(\d+)", published()[case_id]["conditions"])
    m, n, k = shape.groups()
    text = f"gemm:m={m},n={n},k={k},dtype={dtype}"
    return Case(case_id, chip, "gemm", lambda: parse_workload(text), _flops_per_s)


# TPU v1 production apps (Jouppi et al. ISCA 2017): Table 1 gives layers of matrix work,
# weights and batch; Table 3 the share of MAC slots left unused by partly filled 256x256
# tiles. Layer shapes are not published: each app is its matrix layers as equal square
# int8 matmuls of whole tiles, with `fill` of each tile useful. The weight FIFO fetches whole
# tiles, so padded tiles cost weight bandwidth too. Rows streamed per weight: the batch for
# FC/LSTM; for CNN0 the published 2888 MAC per weight byte (8 boards x 361 points).
TPU_V1_APPS = {  # id: (matrix layers, weights, rows per weight, useful MAC %, unused MAC %)
    "perf-tpuv1-mlp0": (5, 20e6, 200, 12.5, 0.3),
    "perf-tpuv1-mlp1": (4, 5e6, 168, 9.4, 1.2),
    "perf-tpuv1-lstm0": (24, 52e6, 64, 8.2, 0.0),
    "perf-tpuv1-lstm1": (37, 34e6, 96, 6.3, 4.2),
    "perf-tpuv1-cnn0": (16, 8e6, 2888, 78.2, 0.0),
}
# CNN1 is left out: its 4 FC and 72 conv layers split 100M weights in a proportion the paper
# does not give, and its time is dominated by which of the two it is (Jouppi 2017, Sec. 7).
SKIPPED = {"perf-tpuv1-cnn1": "conv/FC split of its 100M weights is not published"}


def _tpu_app(case_id: str) -> Case:
    layers, weights, rows, useful, unused = TPU_V1_APPS[case_id]
    fill = useful / (useful + unused)
    side = 256 * max(1, round(math.sqrt(weights / layers / fill) / 256))

    def graph() -> Graph:
        op = MatMul(name="layer", m=rows, n=side, k=side, dtype="int8", count=layers)
        return Graph(
            name=case_id.removeprefix("perf-tpuv1-"), ops=(op,), meta={"useful_frac": fill}
        )

    def useful_ops_per_s(g: Graph, r: Result) -> float:
        return g.flops * g.meta["useful_frac"] / r.time_s

    return Case(case_id, "tpu-v1", "tpu-app", graph, useful_ops_per_s)


def _decode_case(case_id: str, chip: str, model: str, context: int) -> Case:
    return Case(
        case_id,
        chip,
        "decode",
        lambda: build(load_model(model), phase="decode", batch=1, context=context),
        _tokens_per_s,
    )


def cases() -> list[Case]:
    gemms = [
        ("perf-mamf-bf16-a100", "a100", "bf16"),
        ("mamf2-bf16-a100", "a100", "bf16"),
        ("perf-mamf-bf16-h100", "h100", "bf16"),
        ("mamf2-bf16-h100", "h100", "bf16"),
        ("mamf2-fp8-h100", "h100", "fp8"),
        ("mamf2-fp8-h200", "h200", "fp8"),
        ("mamf2-bf16-b200", "b200", "bf16"),
        ("mamf2-fp8-b200", "b200", "fp8"),
        ("mamf2-bf16-gb200", "gb200", "bf16"),
        ("mamf2-fp8-gb200", "gb200", "fp8"),
        ("perf-mamf-bf16-mi300x", "mi300x", "bf16"),
        ("perf-mamf-bf16-mi300xb", "mi300x", "bf16"),
    ]
    # gpt-fast decodes after a 5-token prompt: a KV cache of ~5 tokens
    decodes = [
        ("gptfast-a100-llama2-7b", "a100", "llama2-7b", 5),
        ("gptfast-a100-llama3-8b", "a100", "llama3-8b", 5),
    ]
    return (
        [_gemm_case(*g) for g in gemms]
        + [_tpu_app(i) for i in TPU_V1_APPS]
        + [_decode_case(*d) for d in decodes]
    )


def _sustained_graph(row: dict[str, str]) -> Graph:
    """The row's GEMM, its D written in the type the benchmark writes (`out_dtype`: superbench
    cublaslt_gemm runs fp8e4m3 inputs into an FP16 D, hipblaslt-bench as the row states), not in
    the input type: the output's bytes are what a skinny, memory-bound shape pays for."""
    text = f"gemm:m={row['m']},n={row['n']},k={row['k']},dtype={row['dtype']}"
    graph = parse_workload(text)
    op = replace(graph.ops[0], out_dtype=row["out_dtype"])
    return replace(graph, ops=(op,), resident={"operands": op.bytes})


def _sustained_case(row: dict[str, str]) -> Case:
    workload = partial(_sustained_graph, row)
    return Case(row["id"], row["chip"], "gemm-sustained", workload, _flops_per_s, "sustained")


def sustained_cases() -> list[Case]:
    """The long back-to-back GEMM runs of data/sustained_gemm.csv (selected by the rule in its
    header), each priced at its chip's sustained clock."""
    return [_sustained_case(row) for row in sustained_gemm().values()]
