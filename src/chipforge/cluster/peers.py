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


CALCULON_COMM = ("ar", "p2p_rs_ag", "rs_ag")
CALCULON_KEYS = ("tensor_par", "pipeline_par", "data_par", "batch_size", "microbatch_size",
                 "activation_recompute", "pipeline_interleaving", "optimizer_sharding")  # fmt: skip


def read_calculon_execution(path) -> tuple[dict, list[str]]:
    """plan_training's flags for the Calculon execution JSON at `path` (a user file: size,
    depth and fields checked, one-line errors), and the parts chipforge cannot express."""
    from chipforge.errors import WorkloadError
    from chipforge.userfile import load_json

    exe = load_json(path, what="Calculon execution", error=WorkloadError)
    if isinstance(exe, dict) and "execution" in exe:  # llm-optimal-execution's output entry
        exe = exe["execution"]
    if isinstance(exe, dict) and "0" in exe and isinstance(exe["0"], dict):
        exe = exe["0"].get("execution", exe["0"])  # its top-1 file: {"0": {"execution": ...}}
    if not isinstance(exe, dict):
        raise WorkloadError(f"Calculon execution {path}: expected a JSON object")
    missing = [k for k in CALCULON_KEYS if k not in exe]
    if missing:
        raise WorkloadError(f"Calculon execution {path}: `{missing[0]}` is required; add it")
    rules = {k: ("a whole number >= 1", lambda v: type(v) is int and v >= 1)
             for k in (*CALCULON_KEYS[:5], "pipeline_interleaving")}  # fmt: skip
    for k in ("optimizer_sharding", "training", *CALCULON_OFFLOADS):
        rules[k] = ("true or false", lambda v: type(v) is bool)
    rules["activation_recompute"] = (
        "one of " + ", ".join(CALCULON_RECOMPUTE),
        lambda v: isinstance(v, str) and v in CALCULON_RECOMPUTE,
    )
    rules["tensor_par_comm_type"] = ("ar, p2p_rs_ag or rs_ag", lambda v: v in CALCULON_COMM)
    for key, (want, ok) in rules.items():
        if key in exe and not ok(exe[key]):
            raise WorkloadError(
                f"Calculon execution {path}: `{key}` must be {want}, not {exe[key]!r:.60}"
            )
    plan, batch, unexpressed = calculon_plan({"tensor_par_comm_type": "rs_ag", **exe})
    flags = {
        "tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "cp": 1, "ep": 1, "zero": plan.zero,
        "recompute": plan.recompute, "micro_batch": plan.micro_batch,
        "interleave": plan.interleave, "global_batch": batch,
        "sequence_parallel": plan.sequence_parallel,
    }  # fmt: skip
    return flags, unexpressed
