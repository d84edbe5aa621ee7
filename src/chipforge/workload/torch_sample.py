"""Importing a deep PyTorch model from a few of its layers (`from_torch(..., sample_layers=True)`).

`torch.export` traces every aten op of every layer: ~60-80 ms of CPU a GPT-2 layer on our
machine, so a 100-layer model spends 6-8 s in PyTorch's tracer alone. Most deep models are one
`nn.ModuleList` of identical layers, and chipforge folds those layers into one op with a count
anyway. Here the stack is cut to its first 1, 2 and 3 layers, each cut exported and imported
(folded), and the full model's graph is extrapolated: count(N) = count(1) + (N - 1) x delta,
delta = count(2) - count(1), used only when count(3) - count(2) equals delta for every op and
for the weights (the layers really add the same work each).

Used only when it can be checked: exactly one stack of >= MIN_LAYERS layers of one class with
the same parameter shapes and the same plain attributes in every submodule; folded graphs; no
unsupported ops. Anything else (or any export error of a cut model) returns None and the caller
exports the whole model. What the check cannot see: a parent that picks per-layer behaviour by
index with a period longer than 2 (e.g. a global-attention layer every 6th) and that changes the
cost. Do not sample such models.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

from chipforge.workload.graph import Graph
from chipforge.workload.imported import require

MIN_LAYERS = 4  # below this, three cut exports cost about as much as the whole model


def _signature(module: Any) -> tuple:
    """What must be equal for two layers to run the same ops: classes, parameter and buffer
    shapes and dtypes, and the plain attributes of every submodule."""
    subs = []
    for name, sub in module.named_modules():
        attrs = sorted(
            (k, repr(v)) for k, v in vars(sub).items() if not k.startswith("_") and k != "training"
        )
        subs.append((name, type(sub), tuple(attrs)))
    tensors = [
        (n, tuple(t.shape), t.dtype)
        for n, t in [*module.named_parameters(), *module.named_buffers()]
    ]
    return (tuple(subs), tuple(tensors))


def find_stack(module: Any) -> tuple[Any, str, list] | None:
    """(parent, attribute, the ModuleList) of the model's one long stack of identical layers."""
    torch = require("torch", "a PyTorch model")
    found: list[tuple[str, Any]] = []
    for path, sub in module.named_modules():
        if not isinstance(sub, torch.nn.ModuleList) or len(sub) < MIN_LAYERS:
            continue
        if any(path.startswith(f"{p}.") for p, _ in found):
            continue  # a stack inside a layer of another stack
        first = _signature(sub[0])
        if all(_signature(layer) == first for layer in list(sub)[1:]):
            found.append((path, sub))
    if len(found) != 1:
        return None
    path, stack = found[0]
    parent_path, _, attr = path.rpartition(".")
    return module.get_submodule(parent_path), attr, stack


def sampled(module: Any, export, convert) -> Graph | None:
    """The folded graph of `module` from cuts of its layer stack, or None (export it whole).
    `export(module)` returns an ExportedProgram; `convert(program)` its folded graph."""
    found = find_stack(module)
    if found is None:
        return None
    torch = require("torch", "a PyTorch model")
    parent, attr, stack = found
    graphs = []
    try:
        for k in (1, 2, 3):
            parent._modules[attr] = torch.nn.ModuleList(list(stack)[:k])
            graphs.append(convert(export(module)))
    except Exception:  # a cut the forward cannot run, an unsupported op: export it whole
        return None
    finally:
        parent._modules[attr] = stack
    return _extrapolate(graphs, len(stack))


def _extrapolate(graphs: list[Graph], n: int) -> Graph | None:
    c1, c2, c3 = (Counter({replace(op, count=1): op.count for op in g.ops}) for g in graphs)
    keys = list(dict.fromkeys([*c3, *c2, *c1]))
    delta = {key: c2[key] - c1[key] for key in keys}
    if any(c3[key] - c2[key] != d or d < 0 for key, d in delta.items()):
        return None  # the layers do not each add the same work
    w1, w2, w3 = (g.resident.get("weights", 0.0) for g in graphs)
    if not math.isclose(w3 - w2, w2 - w1, rel_tol=1e-9, abs_tol=1.0):
        return None
    ops = tuple(replace(key, count=c1[key] + (n - 1) * delta[key]) for key in keys)
    resident = graphs[2].resident | {"weights": w1 + (n - 1) * (w2 - w1)}
    return replace(graphs[2], ops=tuple(op for op in ops if op.count > 0), resident=resident)
