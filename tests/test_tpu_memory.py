"""What a TPU's runtime holds back from a training program (memory.XLA_TPU_RESERVED_BYTES),
recomputed from the runtime's own report, and the plans it lets through."""

from __future__ import annotations

import re

import pytest

from chipforge.cluster.memory import (
    RESERVED_BYTES,
    XLA_TPU_RESERVED_BYTES,
    GiB,
    reserved_bytes,
)
from chipforge.cluster.search import plan_training
from chipforge.cluster.training import Plan, plan_memory
from chipforge.errors import Infeasible
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model

# the designated case: XLA:TPU's out-of-memory report on TPU v5e (16 GiB of HBM), quoted in
# GoogleCloudPlatform/kubernetes-engine-samples PR 1467
V5E_REPORT = "Ran out of memory in memory space hbm. Used 20.44G of 15.75G hbm."
# checked against it: MaxText's print_mem_stats on TPU v5p (docs: understand_logs_and_metrics.md)
V5P_MEMSTATS = "Using (GB) 44.63 / 95.74 (46.615835%) on TPU_0(process=0,(0,0,0,0))"


def test_the_tpu_reserve_is_what_the_runtime_s_limit_leaves_of_the_hbm():
    limit = float(re.search(r"of ([\d.]+)G hbm", V5E_REPORT).group(1)) * GiB  # XLA: G = GiB
    v5e = load_chip("tpu-v5e")
    assert v5e.hbm.capacity == 16 * GiB
    assert v5e.hbm.capacity - limit == pytest.approx(XLA_TPU_RESERVED_BYTES)  # 0.25 GiB
    # v5p: bytes_limit 95.74 GiB of 96 GiB physical, the same quarter GiB within 0.02 GiB
    v5p_limit = float(re.search(r"/ ([\d.]+) ", V5P_MEMSTATS).group(1)) * GiB
    assert 96 * GiB - v5p_limit == pytest.approx(XLA_TPU_RESERVED_BYTES, abs=0.02 * GiB)
    assert reserved_bytes(v5e) == XLA_TPU_RESERVED_BYTES
    assert reserved_bytes(load_chip("h100")) == RESERVED_BYTES == 3 * GiB


def test_a_tpu_plan_that_fits_under_the_runtime_s_limit_is_not_refused():
    """A plan needing between 16 - 3 and 16 - 0.25 GiB per v5e chip ran on the TPU's limit; the
    GPU frameworks' 3 GiB made the model refuse it. The same plan's other bytes are unchanged."""
    c = load_model("llama3-8b", layers=8)
    chips, seq, kw = 8, 2048, dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, recompute="full")
    tpu = reserved_bytes(load_chip("tpu-v5e"))
    for mb in range(1, 64):
        p = Plan(micro_batch=mb, **kw)
        rest = sum(plan_memory(c, p, seq=seq, dtype="bf16", reserved=0.0).values())
        if 16 * GiB - RESERVED_BYTES < rest <= 16 * GiB - tpu:
            break
    else:
        pytest.fail("no micro-batch lands between the two reserves")
    plan = plan_training("tpu-v5e", c, chips, seq=seq, global_batch=mb * 8, micro_batch=mb, **kw)
    assert plan.memory["reserved_bytes"] == pytest.approx(tpu)
    assert plan.memory_per_chip_bytes == pytest.approx(rest + tpu)
    # a GPU with the same 16 GiB still holds back 3 GiB and refuses it
    h100 = load_chip("h100")
    small = h100.model_copy(
        update={"memory": (h100.hbm.model_copy(update={"capacity": 16 * GiB}), *h100.memory[1:])}
    )
    with pytest.raises(Infeasible, match="needs"):
        plan_training(small, c, chips, seq=seq, global_batch=mb * 8, micro_batch=mb, **kw)
