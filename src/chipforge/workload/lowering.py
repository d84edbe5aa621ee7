"""An imported program as an operator graph: fold constants, fuse patterns, cost every node.

The step after the importers (`torch_import`, `pt2_archive`, `onnx_import`) have built a
`Program`; it sits above `imported` (the program's data model), `patterns` (fusion) and `costs`
(one rule per node kind), so none of those imports it.
"""

from __future__ import annotations

from chipforge.errors import WorkloadError
from chipforge.workload.costs import RULES, unsupported_op
from chipforge.workload.graph import Graph
from chipforge.workload.imported import (
    Formats,
    Program,
    assign_names,
    causal_masks,
    fold_repeats,
    is_free,
    largest_value,
    mark_static,
    unsupported_error,
)
from chipforge.workload.ops import Attention, MatMul, Op
from chipforge.workload.patterns import fuse


def to_graph(
    program: Program,
    *,
    name: str,
    dtype: str | None = None,
    allow_unsupported: bool = False,
    fold: bool = True,
) -> Graph:
    """Cost `program` as an operator graph: fold constants, fuse patterns, lower every node
    with its cost rule. Unsupported ops raise one error listing them all, or, with
    `allow_unsupported`, become vector work recorded in `graph.meta`."""
    formats = Formats(dtype)
    causal_masks(program)
    mark_static(program)
    fuse(program)
    costed = [node for node in program.nodes if not is_free(program, node)]
    assign_names(program, costed)
    ops: list[Op] = []
    missing: dict[str, list] = {}
    for node in costed:
        rule = RULES.get(node.kind)
        if rule is None:
            entry = missing.setdefault(node.source or node.kind, [0, node.label or node.name])
            entry[0] += 1
            ops += unsupported_op(program, node, formats)
        else:
            ops += rule(program, node, formats)
    if missing and not allow_unsupported:
        raise unsupported_error(program.source, missing)
    if not ops:
        raise WorkloadError(
            f"`workload` {program.source} has no work to cost: every node is constant (shape "
            f"arithmetic or static data; {largest_value(program)}); export the model with its "
            "inputs"
        )
    weights = sum(formats.nbytes(program.values[p]) for p in program.params)
    if missing:  # the workload's name carries it into every table and JSON report
        nodes = sum(count for count, _ in missing.values())
        name += f" ({nodes} unsupported op{'s' if nodes > 1 else ''} costed as vector work)"
    return Graph(
        name=name,
        ops=tuple(fold_repeats(ops) if fold else ops),
        resident={"weights": weights},
        meta=_meta(program, ops, missing, dtype),
    )


def _attention_kinds(program: Program, ops: list[Op]) -> str:
    """How the graph's attention is costed: causal (is_causal, or a causal mask), causal with a
    sliding window (a banded mask), else full."""
    kinds = {
        (f"causal with a {op.window}-token sliding window" if op.window else "causal")
        if op.causal
        else "full"
        for op in ops
        if isinstance(op, Attention)
    }
    if kinds:
        return " and ".join(sorted(kinds))
    if any(n.kind == "softmax" for n in program.nodes):
        return "none recognised (matmul and softmax as exported)"
    return "none (no softmax in the graph)"  # a CNN


def _logits(ops: list[Op]) -> str:
    """How many positions' logits the graph computes: the rows of its LM head (transformers
    names it `lm_head`), as exported; a TorchScript trace of `logits_to_keep=1` keeps one."""
    heads = [op for op in ops if isinstance(op, MatMul) and op.name.split(".")[-1] == "lm_head"]
    if len(heads) != 1:
        return "as exported (every position the graph computes)"
    rows = heads[0].m * heads[0].batch
    return f"as exported (lm_head computes {rows:,} row{'s' if rows != 1 else ''})"


def _meta(program: Program, ops: list[Op], missing: dict[str, list], dtype: str | None) -> dict:
    meta: dict[str, object] = {
        "source": program.source,
        "dtype": dtype or "as stored",
        # trained parameters, tied once (BatchNorm statistics and other buffers left out)
        "params": sum(program.values[p].numel for p in program.params if p not in program.buffers),
        "logits": _logits(ops),
        "attention": _attention_kinds(program, ops),
    }
    if missing:
        nodes = sum(count for count, _ in missing.values())
        meta["unsupported"] = {kind: count for kind, (count, _) in sorted(missing.items())}
        meta["warnings"] = [
            f"{nodes} op{'s' if nodes > 1 else ''} without a cost rule "
            f"({', '.join(sorted(missing))}) costed as vector work: 1 FLOP per output element, "
            "every input read and output written once"
        ]
    return meta
