"""A framework-neutral view of an imported program (`lowering.to_graph` turns it into the IR).

The PyTorch and ONNX front-ends (`torch_import`, `onnx_import`) translate their graphs into the
same small vocabulary: `Node`s of a canonical `kind` (matmul, conv, attention, softmax, add,
layout, ...) over `Value`s with concrete shapes. Everything after that is shared: constant
folding (`static` values), fusion patterns (`patterns`), cost rules (`costs`), readable names
from module scopes, folding of repeated layers into one op with a count, and the one error that
lists every op we cannot cost.
"""

from __future__ import annotations

import gc
import importlib
import math
import re
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from chipforge.dtypes import nbytes
from chipforge.errors import WorkloadError
from chipforge.workload.ops import Op

DEFAULT_FORMAT = "fp32"  # the vector format of ops over integers only (index arithmetic)
FLOAT_FORMATS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4")


@dataclass
class Value:
    """A tensor of the imported program. `fmt` is its chipforge float format (None for integer
    and boolean tensors, whose storage is `itemsize` bytes); `static` values are known before the
    program runs (weights, constants, shapes), so work on them alone is folded away at compile
    time; `data` holds a small constant's numbers when the front-end knows them."""

    shape: tuple[int, ...]
    fmt: str | None
    itemsize: float
    static: bool = False
    data: Any = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Node:
    """One framework op in canonical form: `inputs`/`outputs` are value ids ('' for an absent
    optional input); `scope` is the module path it came from; `source`/`label` are the
    framework's op type and node name, for messages."""

    kind: str
    inputs: list[str]
    outputs: list[str]
    scope: str = ""
    source: str = ""
    label: str = ""
    attrs: dict = field(default_factory=dict)
    name: str = ""  # set by `assign_names`


@dataclass
class Program:
    source: str  # what was imported, for messages: 'model.onnx', 'GPT2'
    values: dict[str, Value]
    nodes: list[Node]
    params: list[str]  # value ids of the weights (what stays resident)
    # the weights that are not trained parameters (BatchNorm running statistics, rotary
    # tables, constants): resident, but not counted in `meta.params`
    buffers: frozenset[str] = frozenset()
    # a larger constant's values on request (an ONNX initializer too big to read up front, for
    # the attention pattern's mask analysis): None when unknown or too large
    load: Callable[[str], Any] | None = None

    def value(self, vid: str) -> Value | None:
        return self.values.get(vid) if vid else None

    def data(self, vid: str) -> Any:
        """A static value's numbers: known at import, else read on request (`load`), else None."""
        value = self.values.get(vid)
        if value is None or value.data is not None or self.load is None:
            return None if value is None else value.data
        return self.load(vid)

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for vid in node.inputs:
                if vid:
                    users.setdefault(vid, []).append(node)
        return users

    def producers(self) -> dict[str, Node]:
        return {vid: node for node in self.nodes for vid in node.outputs}


@dataclass(frozen=True)
class Formats:
    """How values are costed: `override` replaces every float format (a fp32 checkpoint served
    in bf16); otherwise each value keeps its own."""

    override: str | None = None

    def _replaced(self, v: Value) -> bool:
        return bool(self.override) and v.fmt in FLOAT_FORMATS

    def fmt(self, v: Value) -> str:
        if v.fmt is None:
            return DEFAULT_FORMAT
        return self.override if self._replaced(v) else v.fmt

    def itemsize(self, v: Value) -> float:
        return nbytes(self.override) if self._replaced(v) else v.itemsize

    def nbytes(self, v: Value) -> float:
        return v.numel * self.itemsize(v)


def mark_static(program: Program) -> None:
    """Constant folding: a node all of whose inputs are static (or that has none: arange,
    zeros) computes static values; the compiler evaluates it once, ahead of the run."""
    for node in program.nodes:
        if node.kind == "static" or all(program.values[v].static for v in node.inputs if v):
            for vid in node.outputs:
                if vid in program.values:
                    program.values[vid].static = True


def is_free(program: Program, node: Node) -> bool:
    """Layout changes, casts to the format a tensor already has (`x.to(torch.float32)` on an
    fp32 tensor returns it) and constant computations cost nothing at run time."""
    if node.kind in ("layout", "static"):
        return True
    if node.kind == "cast" and node.inputs and node.outputs:
        src, out = program.value(node.inputs[0]), program.value(node.outputs[0])
        same = src is not None and out is not None and src.shape == out.shape
        if same and (src.fmt, src.itemsize) == (out.fmt, out.itemsize):
            return True
    outs = [program.values[v] for v in node.outputs if v in program.values]
    return bool(outs) and all(v.static for v in outs)


def assign_names(program: Program, costed: list[Node]) -> None:
    """Readable op names from module scopes: the scope alone when it holds one costed op
    (a Linear is its matmul), else scope.kind, numbered kind_2, kind_3 within the scope."""
    per_scope = Counter(node.scope for node in costed)
    seen: Counter[tuple[str, str]] = Counter()
    for node in costed:
        if node.scope and per_scope[node.scope] == 1:
            node.name = node.scope
            continue
        seen[node.scope, node.kind] += 1
        n = seen[node.scope, node.kind]
        base = f"{node.scope}.{node.kind}" if node.scope else node.kind
        node.name = base if n == 1 else f"{base}_{n}"


_INDEX = re.compile(r"(?<![^.])\d+(?![^.])")  # a path component that is a number


def fold_repeats(ops: list[Op]) -> list[Op]:
    """Ops that differ only in a layer index (h.0.attn, h.1.attn, ...) become one op named
    h.*.attn with their total count, in order of first appearance."""
    counts: dict[Op, int] = {}
    for op in ops:
        key = replace(op, name=_INDEX.sub("*", op.name), count=1)
        counts[key] = counts.get(key, 0) + op.count
    return [replace(op, count=n) for op, n in counts.items()]


def unsupported_error(source: str, missing: dict[str, list]) -> WorkloadError:
    listed = "; ".join(
        f"{kind} ({count} node{'s' if count > 1 else ''}, first {label})"
        for kind, (count, label) in sorted(missing.items())
    )
    return WorkloadError(
        f"`workload` {source} has ops chipforge cannot cost: {listed}; pass --allow-unsupported "
        "(Python: allow_unsupported=True) to cost them as vector work"
    )


def unbound_error(source: str, dims: list[str], python: str) -> WorkloadError:
    names = ", ".join(dims)
    cli = ",".join(f"{d}=N" for d in dims)
    py = ", ".join(f"{d!r}: N" for d in dims)
    return WorkloadError(
        f"`workload` {source} has dynamic dimensions left unbound: {names}; give each a size: "
        f"{source},{cli} (Python: {python}(..., dims={{{py}}}))"
    )


def largest_value(program: Program) -> str:
    """'its largest tensor, X (N elements, made by OpType node 'name')', for messages."""
    if not program.values:
        return "no tensors"
    size = lambda v: math.prod(float(d) for d in v.shape)  # noqa: E731
    vid, value = max(program.values.items(), key=lambda kv: size(kv[1]))
    node = next((n for n in program.nodes if vid in n.outputs), None)
    by = f", made by {node.source} node {node.label!r}" if node else ""
    return f"its largest tensor, {vid!r} ({size(value):.3g} elements{by})"


COMPARES = ("le", "lt", "ge", "gt")
THROUGH = ("layout", "cast")  # ops a mask's index passes through unchanged


def mask_kind(made: dict[str, Node], mask: str, reach: int = 400) -> tuple[bool, int]:
    """(causal, window) of an attention mask built from position indices, as transformers
    builds it (masking_utils): `kv_idx <= q_idx` makes it causal, a comparison of two values
    made from `arange`; `kv_idx > q_idx - window` (sliding_window_overlay) adds a window, the
    same comparison with a Python number taken off one side: kv > q - w attends w keys, kv >=
    q - w attends w + 1. (False, 0) when no such comparison is among the mask's ancestors
    (within `reach` nodes): a padding-only mask (BERT) is full."""

    def ancestors(vid: str) -> list[Node]:
        seen, todo, out = set(), [vid], []
        while todo and len(out) < reach:
            node = made.get(todo.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            out.append(node)
            todo += [i for i in node.inputs if i]
        return out

    def offset(vid: str) -> float | None:
        """w when `vid` is (an index) - w, through layout ops; else None."""
        node = made.get(vid)
        while node is not None and node.kind in THROUGH and node.inputs:
            node = made.get(node.inputs[0])
        if node is None or node.kind not in ("add", "sub") or not node.attrs.get("scalar"):
            return None  # not an offset (x + 0 is transformers' cache position: no window)
        return node.attrs["scalar"] * (1 if node.kind == "sub" else -1)

    causal, window = False, 0
    for compare in (n for n in ancestors(mask) if n.kind in COMPARES):
        sides = [i for i in compare.inputs[:2] if i]
        if len(sides) != 2 or not all(
            any(a.source.endswith("arange") or a.source == "Range" for a in ancestors(i))
            for i in sides
        ):
            continue
        # the side that must be greater: gt/ge(a, b) -> a; lt/le(a, b) -> b
        big, small = sides if compare.kind in ("gt", "ge") else sides[::-1]
        w = offset(small)
        if w is not None and offset(big) is None and w > 0 and w == int(w):
            window = int(w) + (1 if compare.kind in ("ge", "le") else 0)
        elif offset(big) is None and w is None:
            causal = True
    return causal, (window if causal else 0)


def causal_masks(program: Program, reach: int = 400) -> None:
    """Mark attention whose explicit mask is causal as causal (and its sliding window, if the
    mask has one: `mask_kind`). Without such a mask (a padding-only mask, BERT): full."""
    made = {out: node for node in program.nodes for out in node.outputs}
    for node in program.nodes:
        mask = node.attrs.get("mask") if node.kind == "attention" else None
        if not mask or node.attrs.get("causal"):
            continue
        causal, window = mask_kind(made, mask, reach)
        if causal:
            node.attrs["causal"] = True
            if window:
                node.attrs["window"] = window


@contextmanager
def gc_paused():
    """The cyclic garbage collector paused while an importer builds a program: its tens of
    thousands of small dicts and nodes would trigger collections that find no cycles (a third
    of a 100-layer .pt2 import's time); nothing is left to collect after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def logger_quiet(name: str, level: int):
    """The `name` logger holds back records below `level` for the block: a library's own log
    lines (transformers' config warnings, torch's fake-tensor tracebacks) would repeat an
    error the importer reports in one line."""
    import logging

    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def require(module: str, what: str):
    """Import an optional dependency of the importers, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - the models extra installs it
        raise WorkloadError(
            f"importing {what} needs {module}: pip install 'chipforge[models]'"
        ) from None
