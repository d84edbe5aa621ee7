"""The training model at Qwen3-30B-A3B runs NVIDIA measured around the frontier rows' recipes,
where one published measurement changes the micro-batch, the dispatcher, the CUDA-graph scope or
the batch-level EP overlap (docs/cluster.md, "Why the small-expert MoE rows still run slower
than priced").

A diagnostic, not a validation set: nothing is tuned to these runs and no summary counts them.
Sources (Megatron-Bridge, docs/performance-summary-archive.md, each container's table, and the
recipe of the release that table was measured with, scripts/performance/configs/qwen/
qwen3_workload_base_configs.py):
- 26.02 (v0.3.0): DGX-B200 x 8 MXFP8 MBS 1, all-to-all dispatcher, CUDA graphs for router and
  preprocessing only, 9,691 tokens/s/GPU; DGX-H100 x 16 FP8-CS PP 2 VP 12 EP 8 MBS 1 GBS 1024,
  DeepEP (flex) with moe_a2a_overlap=True, no CUDA graphs, 5,113.
- 26.02.01 (v0.3.1): DGX-B200 MBS 4, HybridEP (flex), graphs for attention, router and
  preprocessing, 26,695; DGX-H100 9,058 (the table still reads PP 2 VP 12 EP 8; the v0.3.1
  recipe sets EP 16, HybridEP, moe_a2a_overlap=False, no graphs: priced both ways below).
- 26.04 (v0.4.0): DGX-B200 as 26.02.01, 26,859 (training.MOE_HOST_S_PER_LAUNCH's designated
  case); DGX-H100 FP8-CS EP 16 MBS 1 GBS 1024, HybridEP, no graphs, 8,901.
- Megatron-Bridge pull request 3868 (docs/training/cuda-graphs.md): DGX-H100 x 16 BF16, TP 1,
  PP 1, EP 16, MBS 1, GBS 1024, all-to-all dispatcher, moe_a2a_overlap off: replay iterations
  5-8 averaged 41.36 s per step eager and 42.00 s with attention, router and preprocessing
  captured in CUDA graphs. The model prices the eager run (the graphs are not an input).
- Megatron-Bridge skills/nemo-mbridge-perf-expert-parallel-overlap/SKILL.md (2026-07-25, EP
  overlap off): DGX-H100 x 16 BF16, TP 1, PP 1, EP 16, MBS 1, GBS 1024, HybridEP, CUDA graphs for
  router and preprocessing, 24.71 s per step; its Nsight Systems capture: 463,348 kernels per
  rank per step (151 per layer per micro-batch) and the GPU active 22.82 s of it, i.e. 1.89 s
  idle, beside the model's host time (moe_host_s). Same file: the all-to-all dispatcher at that
  shape (fine-tuning, moe_permute_fusion off), 41.25 s.
Not modelled: moe_a2a_overlap (Megatron-Core's 1F1B all-to-all overlap; the DeepSeek-V3 GB200
guide found it "aggravates the CPU overhead", net negative there, unsized). Run:

    python benchmarks/moe_host_recipe_check.py
"""

from __future__ import annotations

from chipforge.cluster.search import plan_training
from chipforge.cluster.topology import topology_for
from chipforge.spec.loader import load_chip

SEQ = 4096
# (label, system, chips, dtype, fp8 recipe, pp, vp, ep, micro-batch, global batch, dispatcher,
#  published tokens/s per GPU)
RUNS = (
    ("26.02 v0.3.0", "b200", 8, "fp8", "mxfp8", 1, 1, 8, 1, 512, "alltoall", 9691),
    ("26.02.01 v0.3.1", "b200", 8, "fp8", "mxfp8", 1, 1, 8, 4, 512, "flex", 26695),
    ("26.04 v0.4.0", "b200", 8, "fp8", "mxfp8", 1, 1, 8, 4, 512, "flex", 26859),
    ("26.02 v0.3.0", "h100", 16, "fp8", "current", 2, 12, 8, 1, 1024, "flex", 5113),
    ("26.02.01 table", "h100", 16, "fp8", "current", 2, 12, 8, 1, 1024, "flex", 9058),
    ("26.02.01 v0.3.1", "h100", 16, "fp8", "current", 1, 1, 16, 1, 1024, "flex", 9058),
    ("26.04 v0.4.0", "h100", 16, "fp8", "current", 1, 1, 16, 1, 1024, "flex", 8901),
    ("PR 3868 eager", "h100", 16, "bf16", "delayed", 1, 1, 16, 1, 1024, "alltoall",
     1024 * SEQ / 16 / 41.36),
    ("EP-overlap skill", "h100", 16, "bf16", "delayed", 1, 1, 16, 1, 1024, "flex",
     1024 * SEQ / 16 / 24.7138),
    ("EP-overlap skill", "h100", 16, "bf16", "delayed", 1, 1, 16, 1, 1024, "alltoall",
     1024 * SEQ / 16 / 41.25),
)  # fmt: skip


def main() -> None:
    for label, chip_name, chips, dtype, recipe, pp, vp, ep, mbs, gbs, disp, published in RUNS:
        chip = load_chip(chip_name)
        fp8 = dtype == "fp8"
        res = plan_training(
            chip, "qwen3-30b-a3b", chips, seq=SEQ, global_batch=gbs, dtype=dtype,
            fp8_recipe=recipe, fp8_param_gather=fp8, overlap_param_gather=recipe != "mxfp8",
            tp=1, cp=1, pp=pp, interleave=vp, dp=chips // pp, ep=ep, micro_batch=mbs,
            recompute="none", topology=topology_for(chip, chips), moe_dispatcher=disp,
            moe_host_sync=True,
        )  # fmt: skip
        predicted = res.tokens_per_s / chips
        print(
            f"{label:16s} {chip_name} x{chips:<2d} {dtype:4s} PP{pp} VP{vp:<2d} EP{ep:<2d} "
            f"MBS{mbs} {disp:8s}: published {published:6.0f}, predicted {predicted:6.0f} "
            f"tokens/s/GPU ({predicted / published - 1:+.1%}; host "
            f"{res.times.get('moe_host_s', 0.0):.2f} of {res.step_time_s:.2f} s)"
        )


if __name__ == "__main__":
    main()
