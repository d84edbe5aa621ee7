"""torchtitan without torch.compile runs its block's elementwise ops as PyTorch eager kernels
(layer.EAGER_BYTES): the constants are recounted here from the aten calls of torchtitan's own
code (9dec370: models/norms.py RMSNorm, models/llama/model.py apply_rotary_emb, repeat_kv and
FeedForward), forward and backward, with a TorchDispatchMode that adds up every non-view call's
input and output bytes."""

from __future__ import annotations

import pytest

from chipforge.cluster import check_validate as cv
from chipforge.cluster import validate
from chipforge.cluster.layer import EAGER_BYTES, LayerShape, layer_costs
from chipforge.spec.loader import load_chip
from chipforge.workload import load_model

torch = pytest.importorskip("torch")
F = torch.nn.functional

_VIEWS = {"view", "_unsafe_view", "reshape", "transpose", "t", "expand", "view_as_complex",
          "view_as_real", "detach", "alias", "permute", "unsqueeze", "squeeze", "slice",
          "select", "as_strided", "_reshape_alias", "lift_fresh"}  # fmt: skip


def _bytes(t) -> int:  # a broadcast operand reads its storage once
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


def _count(fn, *shapes) -> tuple[float, float]:
    """(forward, backward) bytes the aten calls of `fn` and of its autograd backward move."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.__name__.split(".")[0] not in _VIEWS:
                flat = tree_flatten((args, kwargs, out))[0]
                self.total += sum(_bytes(a) for a in flat if isinstance(a, torch.Tensor))
            return out

    xs = [torch.randn(*s, dtype=torch.bfloat16, requires_grad=True) for s in shapes]
    with Count() as fwd:
        ys = fn(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    grads = [torch.randn_like(y) for y in ys]
    with Count() as bwd:
        torch.autograd.backward(ys, grads)
    return fwd.total, bwd.total


T, H, S, NH, NKV, D, FFN = 64, 1024, 64, 32, 8, 128, 3584
WEIGHT = torch.ones(H, dtype=torch.bfloat16, requires_grad=True)
FREQS = torch.polar(torch.ones(S, D // 2), torch.rand(S, D // 2))  # complex64, as torchtitan's


def rmsnorm(x, eps=1e-6):  # torchtitan 9dec370 models/norms.py RMSNorm.forward
    def _norm(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    output = _norm(x.float()).type_as(x)
    return output * WEIGHT


def apply_rotary_emb(xq, xk):  # models/llama/model.py
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = FREQS.view(1, S, 1, D // 2)
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


def repeat_kv(x, n_rep):  # models/llama/model.py
    bs, slen, n_kv_heads, head_dim = x.shape
    return (
        x[:, :, :, None, :]
        .expand(bs, slen, n_kv_heads, n_rep, head_dim)
        .reshape(bs, slen, n_kv_heads * n_rep, head_dim)
    )


def test_eager_bytes_are_what_torchtitan_s_eager_ops_move():
    fwd, bwd = _count(rmsnorm, (T, H))
    for part in ("attn_norm", "ffn_norm"):
        assert EAGER_BYTES[part] == pytest.approx((fwd / (T * H), bwd / (T * H)), rel=0.01)
    fwd, bwd = _count(apply_rotary_emb, (1, S, NH, D), (1, S, NKV, D))
    n = S * (NH + NKV) * D  # the layer graph's "rope" elements: queries and keys
    assert EAGER_BYTES["rope"] == pytest.approx((fwd / n, bwd / n), rel=0.02)
    fwd, bwd = _count(lambda a, b: F.silu(a) * b, (T, FFN), (T, FFN))  # FeedForward's act
    assert EAGER_BYTES["ffn_act"] == pytest.approx((fwd / (T * FFN), bwd / (T * FFN)))
    n_rep = NH // NKV
    fwd, bwd = _count(lambda k, v: (repeat_kv(k, n_rep), repeat_kv(v, n_rep)),
                      (1, S, NKV, D), (1, S, NKV, D))  # fmt: skip
    n = 2 * S * NH * D  # the copies' elements (layer._eager: 2 + 2 / n_rep bytes each)
    assert (fwd / n, bwd / n) == pytest.approx((2 + 2 / n_rep, 2 + 2 / n_rep))


def test_an_eager_layer_costs_its_extra_bytes_at_the_chip_s_bandwidth():
    chip, c = load_chip("h100"), load_model("llama3-8b")
    args = (c, 1, 2, 8192, 1, "bf16")
    fused = layer_costs(LayerShape(chip, *args, attention="flash2"))
    eager = layer_costs(LayerShape(chip, *args, attention="flash2", eager_ops=True))
    t = 2 * 8192
    extra_fwd = (
        2 * t * c.hidden * (EAGER_BYTES["attn_norm"][0] - 4)  # the graph's fused norms: 4 B
        + t * (c.heads + c.n_kv_heads) * c.d_head * (EAGER_BYTES["rope"][0] - 4)
        + t * c.ffn * (EAGER_BYTES["ffn_act"][0] - 6)
        + 2 * t * c.heads * c.d_head * (2 + 2 / 4)  # repeat_kv's copies
    )
    bandwidth = chip.hbm.bandwidth
    assert eager[0] - fused[0] >= 0.5 * extra_fwd / bandwidth
    assert eager[0] - fused[0] <= 1.5 * extra_fwd / bandwidth
    assert eager[1] > fused[1] and eager[2] == fused[2]  # the attention core is the same kernel


def test_torchtitan_rows_without_compile_run_eager_ops():
    """Rule C1's rows whose runs did not compile (Tables 1 and 3 "FSDP"; docs/performance.md's
    Llama 2 and 3 configs at 3faaa1a0: `compile = false`) state eager_ops; the compiled rows of
    the same table do not, and run slower only by it."""
    by_id = {r["id"]: r for r in cv.rows()}
    eager = [i for i, r in by_id.items() if r["eager_ops"] == "yes"]
    assert sorted(eager)[:2] == ["tt2412-t1-fsdp", "tt2412-t3-fsdp"] and len(eager) == 10
    assert all("github.com/pytorch/torchtitan/" in by_id[i]["source"] for i in eager)

    def tokens_per_s(row_id):
        row = by_id[row_id]
        plan = validate.training_plan({**cv.training_row(row), "chip": cv.chip_for(row)})
        return plan.tokens_per_s

    ratio = tokens_per_s("tt2412-t1-fsdp-compile") / tokens_per_s("tt2412-t1-fsdp")
    assert 1.1 < ratio < 1.5  # torchtitan's Table 1: 6,667 / 5,762 = 1.16


def test_eager_ops_refuse_a_block_their_bytes_were_not_counted_on():
    """EAGER_BYTES are torchtitan's Llama block's: a GELU-MLP model (GPT) is refused in one
    line by the search and by evaluate_plan, not priced at RMSNorm and SwiGLU's bytes."""
    from chipforge.cluster import plan_training
    from chipforge.cluster.topology import topology_for
    from chipforge.cluster.training import Plan, evaluate_plan
    from chipforge.errors import WorkloadError
    from chipforge.workload.config import ModelConfig

    gpt = ModelConfig(name="gpt-tiny", layers=2, hidden=1024, heads=8, ffn=4096, vocab=32000,
                      seq=2048, act="gelu")  # fmt: skip
    with pytest.raises(WorkloadError, match="--eager-ops"):
        plan_training("h100", gpt, 8, eager_ops=True, global_batch=8)
    chip = load_chip("h100")
    with pytest.raises(WorkloadError, match="--eager-ops"):
        evaluate_plan(chip, gpt, 8, Plan(dp=8), topology_for(chip, 8), seq=2048,
                      global_batch=8, dtype="bf16", eager_ops=True)  # fmt: skip
    plan_training("h100", gpt, 8, global_batch=8)  # (fused: priced as before)
