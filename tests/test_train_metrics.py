"""Composer evaluates llm-foundry MPT's two train metrics (LanguageCrossEntropy and
LanguagePerplexity, each a torch.nn.CrossEntropyLoss(reduction='sum') over the full logits) after
every micro-batch's backward pass (training.TRAIN_METRIC_BYTES): the bytes are recounted here
from the aten calls of torch's own CrossEntropyLoss under bf16 autocast, and the llm-foundry rows
are checked to pay them, at the chip's bandwidth, on top of the same plan without them."""

from __future__ import annotations

import pytest

from chipforge.cluster import validate
from chipforge.cluster.training import FRAMEWORK_OVERHEAD, TRAIN_METRIC_BYTES
from chipforge.perf.calibration import calibration
from chipforge.spec.loader import load_chip

torch = pytest.importorskip("torch")

TOKENS, VOCAB = 128, 1000


def _bytes_by_call() -> dict[str, float]:
    """Bytes per logit element each non-view aten call of one metric's update moves (inputs
    read, outputs written); `nll_loss_forward` reads one element of each row (the target's)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    moved: dict[str, float] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.__name__.split(".")[0]
            if name not in ("view", "_unsafe_view", "reshape", "alias", "detach"):
                flat = tree_flatten((args, kwargs, out))[0]
                tensors = [a for a in flat if isinstance(a, torch.Tensor)]
                big = [a for a in tensors if a.numel() == TOKENS * VOCAB]
                if name.startswith("nll_loss"):
                    big = big[1:]  # the log-probabilities are gathered at the targets only
                moved[name] = sum(a.numel() * a.element_size() for a in big) / (TOKENS * VOCAB)
            return out

    logits = torch.randn(4, TOKENS // 4, VOCAB, dtype=torch.bfloat16)  # the forward's output
    target = torch.randint(0, VOCAB, (4, TOKENS // 4))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")  # composer nlp.py
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), Count():
        t = target.view(-1)  # LanguageCrossEntropy.update
        loss_fn(logits.view(t.shape[0], -1), t)
    return moved


def test_train_metric_bytes_are_what_cross_entropy_under_autocast_moves():
    moved = _bytes_by_call()
    assert moved["_to_copy"] == TRAIN_METRIC_BYTES["cast"]  # bf16 -> fp32 copy: 2 + 4
    assert moved["_log_softmax"] == TRAIN_METRIC_BYTES["log_softmax"]  # fp32 in and out
    assert sum(moved.values()) == sum(TRAIN_METRIC_BYTES.values())  # nothing else per element


def _row(row_id: str) -> dict:
    return next(r for r in validate.csv_rows("cluster_heldout.csv") if r["id"] == row_id)


def test_llm_foundry_rows_pay_two_metric_passes_per_micro_batch():
    row = _row("mpt-125m-8xa100-s2048")
    assert validate.framework_options(row) == {"train_metrics": "2"}
    with_metrics = validate.training_plan(row)
    without = validate.training_plan({**row, "train_metrics": "0"})
    # 2 metrics x (tokens per micro-batch x vocab) x 14 B, 2 micro-batches per step, at the
    # HBM's streaming rate, inside the step the framework overhead scales
    c = validate._model(row["model"], row["id"])
    microbatches = int(row["global_batch"]) // int(row["chips"]) // int(row["micro_batch"])
    moved = 2 * microbatches * int(row["micro_batch"]) * int(row["seq"]) * c.vocab * 14
    hbm = load_chip(row["chip"]).hbm.bandwidth * calibration("nvidia-gpu").memory_frac
    extra = with_metrics.step_time_s - without.step_time_s
    assert extra == pytest.approx(moved / hbm / (1 - FRAMEWORK_OVERHEAD), rel=0.02)
    # other frameworks' rows are unchanged
    assert "train_metrics" not in validate.framework_options(_row("megatron-3p6b"))
