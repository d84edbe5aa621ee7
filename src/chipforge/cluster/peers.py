"""Another tool's training plan in chipforge's terms: Calculon's `Llm.Execution` JSON
(github.com/calculon-ai/calculon) as a `Plan`, and the parts of it chipforge cannot express,
named, so a comparison prices what is comparable and says what is not."""

from __future__ import annotations

from chipforge.cluster.training import Plan
from chipforge.workload.config import ModelConfig

CALCULON_RECOMPUTE = {"full": "full", "attn_only": "selective", "none": "none"}
# Calculon knobs with no chipforge counterpart when set: offloads to the second memory tier
CALCULON_OFFLOADS = ("weight_offload", "activations_offload", "optimizer_offload")


def calculon_model(app: dict, name: str = "calculon") -> ModelConfig:
    """A Calculon model file (`models/*.json`) as a GPT-style (GELU MLP, untied 51,200-token
    vocabulary, as Megatron-LM's GPT models) ModelConfig."""
    return ModelConfig(
        name=name,
        layers=app["num_blocks"],
        hidden=app["hidden"],
        heads=app["attn_heads"],
        ffn=app["feedforward"],
        vocab=51200,
        act="gelu",
        seq=app["seq_size"],
    )


def calculon_plan(exe: dict) -> tuple[Plan, int, list[str]]:
    """(plan, global batch, the execution's parts chipforge cannot express) of a Calculon
    execution. Its optimizer sharding is ZeRO-1 (else ZeRO-0); its TP communication type,
    overlap, network choice and fused activations are implementation details chipforge
    prices its own way and are not listed; offloads are."""
    plan = Plan(
        tp=exe["tensor_par"],
        pp=exe["pipeline_par"],
        dp=exe["data_par"],
        zero=1 if exe["optimizer_sharding"] else 0,
        recompute=CALCULON_RECOMPUTE[exe["activation_recompute"]],
        micro_batch=exe["microbatch_size"],
        interleave=exe["pipeline_interleaving"],
        sequence_parallel=exe["tensor_par_comm_type"] != "ar",
    )
    missing = [k for k in CALCULON_OFFLOADS if exe.get(k)]
    if not exe.get("training", True):
        missing.append("training=false (forward only)")
    return plan, exe["batch_size"], missing
