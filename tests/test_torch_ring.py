"""PyTorch's ring attention as torchtitan runs it (training.torch_ring, RunOptions.cp_ring
"torch"): K and V repeated to every query head, one all-gather per pass, fp32 dK/dV passed on
each backward step; in a torch.compile'd block the traced collectives wait at once."""

from __future__ import annotations

import pytest

from chipforge.cluster import check_validate as cv
from chipforge.cluster import plan_training
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import torch_ring
from chipforge.errors import WorkloadError
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model


def test_the_compiled_ring_exposes_its_gathers_and_gradient_sends():
    topo = topology_for(load_chip("h100"), 64)
    kv, cp = 256e6, 4
    gather = collective_time("all_gather", kv * cp, cp, topo, stride=8)
    grads = collective_time("send_recv", 2 * kv, 2, topo, stride=8)
    assert gather > 0 and grads > 0
    kw = dict(stride=8, up_share=1.0)
    # full recompute: two forward passes and the backward's, each one all-gather; cp sends
    full = torch_ring(kv, cp, 1e-3, topo, again=True, compiled=True, **kw)
    assert full == pytest.approx(3 * gather + cp * grads)
    once = torch_ring(kv, cp, 1e-3, topo, again=False, compiled=True, **kw)
    assert once == pytest.approx(2 * gather + cp * grads)
    # eager: each waits after a block, so long blocks hide it all
    assert torch_ring(kv, cp, 10.0, topo, again=True, compiled=False, **kw) == 0.0
    assert 0 < torch_ring(kv, cp, 1e-6, topo, again=True, compiled=False, **kw) < full


def test_torchtitan_rows_ring_their_repeated_heads():
    """The C1 rows take PyTorch's ring (check_validate.CP_RING_SOURCES); a 405B CP run over
    nodes (TP 8 fills one) pays more for it than Transformer Engine's p2p ring of the 8 KV
    heads."""
    rows = {r["id"]: r for r in cv.rows()}
    assert cv.training_row(rows["tt2412-t6-fsdp1-cp8-seq262144"])["cp_ring"] == "torch"
    c = load_model("llama3-8b")
    kw = dict(tp=1, pp=1, dp=1, cp=8, zero=3, micro_batch=1, recompute="full", seq=262144,
              global_batch=1, dtype="bf16")  # fmt: skip
    p2p = plan_training("h100", c, 8, **kw).exposed_comm["cp_s"]
    ring = plan_training("h100", c, 8, cp_ring="torch", **kw).exposed_comm["cp_s"]
    eager = plan_training("h100", c, 8, cp_ring="torch", eager_ops=True, **kw)
    assert ring > p2p and ring > eager.exposed_comm["cp_s"]
    with pytest.raises(WorkloadError, match="^--cp-ring must be one of p2p, torch"):
        plan_training("h100", c, 8, cp_ring="ulysses", **kw)
