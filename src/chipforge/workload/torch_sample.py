"""Importing a deep PyTorch model from a few of its layers (`from_torch`'s `sample_layers`).

`torch.export` traces every aten op of every layer: ~3 ms of CPU an op on our machine, 6 s for
a 100-layer GPT-2, while chipforge folds those layers into one op with a count anyway. Most
deep models are one `nn.ModuleList` of identical layers; for those the stack is cut to its
first 1, 2 and 3 layers, each cut exported and imported (folded), and the full model's graph
extrapolated: count(N) = count(1) + (N - 1) x delta, delta = count(2) - count(1).

Checks, each of which sends the model to the whole export when it fails:
- exactly one stack of >= MIN_LAYERS layers, all of one class with the same parameter shapes
  and the same plain attributes in every submodule (`find_stack`);
- the whole forward run once on meta tensors, every torch call of the parent recorded
  (function, argument shapes, dtypes and plain values; only the first layer really runs, the
  others, being the same module, return its output when called with the same shapes): each
  layer is called once with the same argument shapes and the parent does the same work
  between each two layers; cut to two layers, the parent does the same work before the first
  and after the last (`uniform`). This sees a parent that changes the work by layer index
  (a global-attention layer every 6th) and layers called with different shapes;
- count(3) - count(2) equals delta for every op and for the weights (`_extrapolate`);
- folded graphs, no unsupported ops, every cut exports.
What the checks cannot see: a layer whose work depends on anything but its class, plain
attributes, parameter shapes and argument shapes (a global, a tensor's values, `isinstance`
tests of the parent on its layers, which see the stand-ins). `sample_layers=False` exports
every layer.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from chipforge.workload.graph import Graph
from chipforge.workload.imported import require

# Below this, three cut exports cost about what the whole export does (measured on our 2-core
# machine, CPU time: 8-layer small GPT-2 0.9 s sampled vs 0.5 s whole; 12-layer BERT-base
# 0.43 s vs 0.64 s; ViT-B/16 0.40 s vs 0.52 s; 100-layer GPT-2 0.56 s vs 4.6 s).
MIN_LAYERS = 12


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


def _meta(x: Any) -> Any:
    torch = require("torch", "a PyTorch model")
    if isinstance(x, torch.Tensor):
        return x if x.device.type == "meta" else torch.empty_like(x, device="meta")
    if isinstance(x, (list, tuple)):
        return type(x)(_meta(i) for i in x)
    if isinstance(x, dict):
        return {k: _meta(v) for k, v in x.items()}
    return x


def _sig(x: Any) -> Any:
    torch = require("torch", "a PyTorch model")
    if isinstance(x, torch.Tensor):
        return (tuple(x.shape), x.dtype)
    if isinstance(x, (list, tuple)):
        return tuple(_sig(i) for i in x)
    if isinstance(x, dict):
        return tuple((k, _sig(v)) for k, v in x.items())
    return repr(x)


MARK = "<layer>"  # an event: a layer of the stack starts, with its arguments' signature


def _record(module: Any, args: tuple, found: tuple, k: int | None = None) -> list | None:
    """The torch calls of one forward on meta tensors (the stack cut to `k` layers), with a
    (MARK, arguments) event at each layer's start; None when it cannot run on meta tensors.

    Only the first layer runs (its calls are not recorded); the others return its output
    when called with the same argument shapes: they are the same module (`find_stack`), so
    they would run the same calls. What is recorded is the parent's own work around them."""
    torch = require("torch", "a PyTorch model")
    parent, attr, stack = found
    events: list = []
    first: dict = {}

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if "running" not in first:
                events.append((getattr(func, "__name__", repr(func)), _sig(args), _sig(kwargs)))
            return func(*args, **kwargs)

    class Stub(torch.nn.Module):
        def __init__(self, layer: Any, real: bool):
            super().__init__()
            if real:
                self.layer = layer  # registered: its weights go meta with the model's
            else:
                object.__setattr__(self, "layer", layer)

        def __getattr__(self, name: str) -> Any:  # the parent may read a layer's attributes
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.__dict__.get("layer") or self._modules["layer"], name)

        def forward(self, *a, **kw):
            sig = _sig((a, kw))
            events.append((MARK, sig))
            if "out" not in first:
                first["running"] = True
                first["out"] = self.layer(*a, **kw)
                del first["running"]
                first["sig"] = sig
            elif sig != first["sig"]:
                raise ValueError("a layer called with other shapes")
            return first["out"]

    layers = list(stack)[:k] if k else list(stack)
    parent._modules[attr] = torch.nn.ModuleList(Stub(x, i == 0) for i, x in enumerate(layers))
    try:
        tensors = dict([*module.named_parameters(), *module.named_buffers()])
        on_meta = all(t.device.type == "meta" for t in tensors.values())
        meta = None if on_meta else {name: _meta(t) for name, t in tensors.items()}
        inputs = _meta(args)
        with torch.no_grad(), Record():
            if meta is None:
                module(*inputs)
            else:  # the same module with meta weights: nothing real is computed or changed
                torch.func.functional_call(module, meta, inputs)
    except Exception:  # an op without a meta kernel, data-dependent control flow
        return None
    finally:
        parent._modules[attr] = stack
    return events


@contextmanager
def _cut(parent: Any, attr: str, stack: Any, k: int):
    """The model with its stack cut to the first `k` layers, restored after."""
    torch = require("torch", "a PyTorch model")
    parent._modules[attr] = torch.nn.ModuleList(list(stack)[:k])
    try:
        yield
    finally:
        parent._modules[attr] = stack


def uniform(module: Any, args: tuple, found: tuple) -> bool:
    """Whether the forward, run on meta tensors, calls each layer once with the same argument
    shapes and does the same work of its own between consecutive layers, and the model cut to
    two layers does the whole run's work less layers 1 .. N-2 (the cuts start and end alike)."""
    full = _record(module, args, found)
    if full is None:
        return False
    starts = [i for i, e in enumerate(full) if e[0] == MARK]
    if len(starts) != len(found[2]):
        return False
    segments = [full[a:b] for a, b in zip(starts, starts[1:], strict=False)]
    if any(segment != segments[0] for segment in segments):
        return False
    return _record(module, args, found, 2) == full[: starts[1]] + full[starts[-1] :]


def sampled(module: Any, args: tuple, export, convert) -> Graph | None:
    """The folded graph of `module(*args)` from cuts of its layer stack, or None (export it
    whole). `export(module)` returns an ExportedProgram; `convert(program)` its folded graph."""
    found = find_stack(module)
    if found is None or not uniform(module, args, found):
        return None
    graphs = []
    try:
        for k in (1, 2, 3):
            with _cut(*found, k):
                graphs.append(convert(export(module)))
    except Exception:  # a cut the forward cannot run, an unsupported op: export it whole
        return None
    return _extrapolate(graphs, len(found[2]))


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
    meta = dict(graphs[2].meta)
    if all("params" in g.meta for g in graphs[:2]):
        p1, p2 = graphs[0].meta["params"], graphs[1].meta["params"]
        meta["params"] = p1 + (n - 1) * (p2 - p1)
    ops = tuple(op for op in ops if op.count > 0)
    return replace(graphs[2], ops=ops, resident=resident, meta=meta)
