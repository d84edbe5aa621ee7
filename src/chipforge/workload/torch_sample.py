"""Importing a deep PyTorch model from a few of its layers (`from_torch`'s `sample_layers`).

`torch.export` traces every aten op of every layer: ~3 ms of CPU an op on our machine, 6 s for
a 100-layer GPT-2, while chipforge folds those layers into one op with a count anyway. Most
deep models are one `nn.ModuleList` of identical layers; for those the stack is cut to its
first 1, 2 and 3 layers, each cut exported and imported (folded), and the full model's graph
extrapolated: count(N) = count(1) + (N - 1) x delta, delta = count(2) - count(1).

Checks, each of which sends the model to the whole export when it fails:
- exactly one stack of >= MIN_LAYERS layers, all of one class with the same parameter shapes
  and the same plain attributes in every submodule, but for the layer's own index
  (transformers' `layer_idx`: its KV-cache slot) (`find_stack`);
- the whole forward run once on meta tensors, every layer run, every torch call recorded
  (function, argument shapes, dtypes and plain values), in torch.export's own tracing state so
  that the model takes the branches the export takes (transformers' mask code skips its
  data-dependent `.item()` checks): each layer is called once, in order, and each makes the
  same calls, with the parent's work between two layers the same each time; cut to two layers,
  the run is the whole run less layers 1 .. N-2 (`uniform`). This sees a parent that changes
  the work by layer index (a global-attention layer every 6th), a layer that branches on its
  index, and layers called with different shapes;
- count(3) - count(2) equals delta for every op and for the weights (`_extrapolate`);
- folded graphs, no unsupported ops, every cut exports.
What the checks cannot see: work that depends on a tensor's values (meta tensors have none) or
on global state that changes between the run and the exports. `sample_layers=False` exports
every layer.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import contextmanager, nullcontext
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
    shapes and dtypes, and the plain attributes of every submodule (by (submodule, name))."""
    subs = []
    for name, sub in module.named_modules():
        attrs = sorted(
            ((name, k), repr(v))
            for k, v in vars(sub).items()
            if not k.startswith("_") and k != "training"
        )
        subs.append((name, type(sub), tuple(k for k, _ in attrs)))
        subs.extend(attrs)
    tensors = [
        (n, tuple(t.shape), t.dtype)
        for n, t in [*module.named_parameters(), *module.named_buffers()]
    ]
    return (tuple(subs), tuple(tensors))


def _same_layers(layers: list) -> bool:
    """Whether the layers have one `_signature`, but for their own index: an int attribute
    that counts with the layer's position (transformers' `layer_idx`, a 1-based
    `layer_number`), which names the layer's slot in a KV cache. A layer that also branches on
    it runs other calls, which the all-layer meta run (`uniform`) sees."""
    signatures = [_signature(layer) for layer in layers]
    first = signatures[0]
    if any(len(s[0]) != len(first[0]) or s[1] != first[1] for s in signatures):
        return False
    for i, entry in enumerate(first[0]):
        column = [s[0][i] for s in signatures]
        if all(e == entry for e in column):
            continue
        if not all(isinstance(e[0], tuple) and e[0] == entry[0] for e in column):
            return False  # a class or an attribute list differs
        try:
            index = [int(e[1]) for e in column]
        except ValueError:
            return False
        if index != list(range(index[0], index[0] + len(layers))):
            return False
    return True


def find_stack(module: Any) -> tuple[Any, str, list] | None:
    """(parent, attribute, the ModuleList) of the model's one long stack of identical layers."""
    torch = require("torch", "a PyTorch model")
    found: list[tuple[str, Any]] = []
    for path, sub in module.named_modules():
        if not isinstance(sub, torch.nn.ModuleList) or len(sub) < MIN_LAYERS:
            continue
        if any(path.startswith(f"{p}.") for p, _ in found):
            continue  # a stack inside a layer of another stack
        if _same_layers(list(sub)):
            found.append((path, sub))
    if len(found) != 1:
        return None
    path, stack = found[0]
    parent_path, _, attr = path.rpartition(".")
    return module.get_submodule(parent_path), attr, stack


def _meta(torch: Any, x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x if x.device.type == "meta" else torch.empty_like(x, device="meta")
    if isinstance(x, (list, tuple)):
        return type(x)(_meta(torch, i) for i in x)
    if isinstance(x, dict):
        return {k: _meta(torch, v) for k, v in x.items()}
    return x


def _sig(tensor: type, x: Any) -> Any:
    if isinstance(x, tensor):
        return (tuple(x.shape), x.dtype)
    if isinstance(x, (list, tuple)):
        return tuple(_sig(tensor, i) for i in x)
    if isinstance(x, dict):
        return tuple((k, _sig(tensor, v)) for k, v in x.items())
    return x if type(x) in (int, str) or x is None else repr(x)  # repr: True is not 1


MARK = "<layer>"  # an event: a layer of the stack starts, with its arguments' signature


def _exporting():
    """torch.export's own "compiling and exporting" state (`torch.compiler.is_exporting()`
    true), so the meta run takes the branches the export takes: transformers' mask code skips
    its data-dependent checks (`.item()`, which meta tensors cannot do) when it is traced."""
    try:  # private to torch (2.13); without it such a model is exported whole
        from torch._export.utils import _compiling_state_context
    except ImportError:
        return nullcontext()
    return _compiling_state_context()


def _record(module: Any, args: tuple, found: tuple, k: int | None = None) -> list | None:
    """The torch calls of one forward on meta tensors (the stack cut to `k` layers), every
    layer run, with a (MARK, arguments) event at each layer's start; None when it cannot run
    on meta tensors or calls the layers other than once each, in order."""
    torch = require("torch", "a PyTorch model")
    parent, attr, stack = found
    tensor = torch.Tensor
    events: list = []
    order: list[int] = []

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", None) or repr(func)
            events.append((name, _sig(tensor, args), _sig(tensor, kwargs)))
            return func(*args, **kwargs)

    def mark(position: int):
        def hook(_layer, a, kw):
            order.append(position)
            events.append((MARK, _sig(tensor, (a, kw))))

        return hook

    layers = list(stack)[:k] if k else list(stack)
    hooks = [
        layer.register_forward_pre_hook(mark(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    parent._modules[attr] = torch.nn.ModuleList(layers)
    try:
        tensors = dict([*module.named_parameters(), *module.named_buffers()])
        on_meta = all(t.device.type == "meta" for t in tensors.values())
        meta = None if on_meta else {name: _meta(torch, t) for name, t in tensors.items()}
        inputs = _meta(torch, args)
        with torch.no_grad(), _exporting(), Record():
            if meta is None:
                module(*inputs)
            else:  # the same module with meta weights: nothing real is computed or changed
                torch.func.functional_call(module, meta, inputs)
    except Exception:  # an op without a meta kernel, data-dependent control flow
        return None
    finally:
        parent._modules[attr] = stack
        for hook in hooks:
            hook.remove()
    return events if order == list(range(len(layers))) else None


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
    """Whether the forward, run on meta tensors, calls each layer once, in order, and every
    layer with the parent's work up to the next one makes the same calls, and the model cut to
    two layers does the whole run's work less layers 1 .. N-2 (the cuts start and end alike:
    this also compares the last layer with layer 1)."""
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
