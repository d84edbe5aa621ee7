"""The training model at the MoE configurations NVIDIA ran without dropless MoE's host
synchronisation (docs/cluster.md, "Why the small-expert MoE rows still run slower than priced").

A diagnostic, not a validation set: nothing is tuned to these rows and no summary counts them.
Megatron-Bridge's 26.06 NeMo-container table (docs/performance-summary-archive.md, "26.06 NeMo
Container", MXFP8 rows) was measured with the recipes of Megatron-Bridge v0.5.0
(scripts/performance/configs/qwen/qwen3_workload_base_configs.py, gpt_oss/
gpt_oss_workload_base_configs.py): every MXFP8 row below sets cuda_graph_impl="full_iteration"
with cutedsl_fused_grouped_mlp=True (the sync-free fused grouped-MLP kernels: tokens per expert
stay in GPU memory, so the whole iteration is one CUDA graph), moe_a2a_overlap=True and
fp8_dot_product_attention=True; moe_router_force_load_balancing as in every performance recipe.
The 25.11 rows of the frontier set ran the same models dropless with the host synchronisation
(Megatron-Core token_dispatcher.py `_maybe_dtoh_and_synchronize`; MoE README: without
`--moe-expert-capacity-factor` / `--moe-pad-expert-input-to-capacity` "the resulting dynamic
shapes make MoE layers uncapturable"). Not modelled here: the batch-level EP all-to-all overlap
(moe_a2a_overlap) and FP8 attention. Run:

    python benchmarks/moe_sync_free_check.py
"""

from __future__ import annotations

from dataclasses import replace

from chipforge.cluster.search import plan_training
from chipforge.cluster.topology import topology_for
from chipforge.spec.loader import load_chip
from chipforge.workload.resolve import resolve_model

SEQ = 4096
# (system, chips, model, pp, vp, ep, micro-batch, global batch, published tokens/s per GPU);
# TP = CP = 1, MXFP8, hybridep (flex) dispatcher in every row
ROWS = (
    ("gb300", 8, "qwen3-30b-a3b", 1, 1, 8, 8, 512, 45275),
    ("gb200", 8, "qwen3-30b-a3b", 1, 1, 8, 4, 512, 40706),
    ("b300", 8, "qwen3-30b-a3b", 1, 1, 8, 8, 512, 40769),
    ("gb300", 256, "qwen3-235b-a22b", 4, 12, 32, 2, 8192, 9015),
    ("gb200", 256, "qwen3-235b-a22b", 8, 3, 32, 1, 8192, 7376),
    ("gb300", 64, "gpt-oss-120b", 1, 1, 16, 4, 1280, 33166),
    ("gb200", 64, "gpt-oss-120b", 1, 1, 64, 4, 1280, 28947),
)


def main() -> None:
    for chip_name, chips, model, pp, vp, ep, mbs, gbs, published in ROWS:
        chip = load_chip(chip_name)
        # cutedsl_fused_grouped_mlp sets NVTE_CUTEDSL_FUSED_GROUPED_MLP=1 (v0.5.0
        # perf_plugins.py): Transformer Engine's fused grouped MLP (cuDNN grouped GEMM with the
        # GLU and bias gradient in its epilogue, "...GroupedGemmDgluDbias" kernels, cudnn-
        # frontend issue 256) replaces TEGroupedMLP, so its eager fc2-bias and GLU-clamp passes
        # (layer.EXPERT_BIAS_BYTES, GLU_CLAMP_BYTES) are taken as not run (the clamp's fusion
        # is an assumption)
        c = replace(resolve_model(model), linear_bias=False, glu_limit=0.0)
        res = plan_training(
            chip, c, chips, seq=SEQ, global_batch=gbs, dtype="fp8",
            fp8_recipe="mxfp8", fp8_param_gather=True, tp=1, cp=1, pp=pp, interleave=vp,
            dp=chips // pp, ep=ep, micro_batch=mbs, recompute="none",
            topology=topology_for(chip, chips), moe_dispatcher="flex",
        )  # fmt: skip
        predicted = res.tokens_per_s / chips
        print(
            f"{chip_name:5s} x{chips:<3d} {model:16s} PP{pp} VP{vp} EP{ep} MBS{mbs}: "
            f"published {published:6d}, predicted {predicted:7.0f} tokens/s/GPU "
            f"({predicted / published - 1:+.1%})"
        )


if __name__ == "__main__":
    main()
